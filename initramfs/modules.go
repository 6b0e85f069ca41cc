package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

// Module is one kernel module file to load.
type Module struct {
	Name string // as the kernel names it: dashes become underscores
	Path string // on the host
}

// modName is the kernel's name of a module file or a name given by a user:
// the base name without .ko, with '-' as '_'.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// ResolveModules finds the named modules under modDir (a
// /lib/modules/VERSION directory) and every module they depend on, and
// returns them in an order that loads each after its dependencies. The
// dependencies come from modDir/modules.dep when it is there (depmod
// writes it on install), else from each module's own .modinfo "depends=",
// which is what depmod reads (an unpacked kernel package has no
// modules.dep). Modules built into the kernel (modules.builtin) are
// skipped. Among modules with no order between them, the order of names
// is kept, so the result is the same for the same inputs.
func ResolveModules(modDir string, names []string) ([]Module, error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[modName(l)] = true
		}
	}
	files := map[string]string{} // name -> path
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".ko") {
			files[modName(d.Name())] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find kernel modules under %s: %w", modDir, err)
	}
	depmod, err := readModulesDep(modDir)
	if err != nil {
		return nil, err
	}
	deps := func(name string) ([]string, error) {
		if depmod != nil {
			return depmod[name], nil
		}
		return modinfoDepends(files[name])
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("kernel module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		if builtin[name] && files[name] == "" {
			state[name] = 2
			return nil
		}
		p := files[name]
		if p == "" {
			if len(chain) == 0 {
				return fmt.Errorf("kernel module %s not found under %s/kernel", name, modDir)
			}
			return fmt.Errorf("kernel module %s (needed by %s) not found under %s/kernel", name, chain[len(chain)-1], modDir)
		}
		state[name] = 1
		ds, err := deps(name)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: p})
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readModulesDep reads modules.dep ("kernel/a.ko: kernel/b.ko ...") as
// name -> dependency names; nil when there is none.
func readModulesDep(modDir string) (map[string][]string, error) {
	b, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, modName(strings.TrimSuffix(d, ".xz")))
		}
		m[modName(strings.TrimSuffix(mod, ".xz"))] = ds
	}
	return m, sc.Err()
}

// modinfoDepends reads the "depends=" field of a module's .modinfo section.
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel module %s has no .modinfo section", path)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var ds []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					ds = append(ds, modName(d))
				}
			}
			return ds, nil
		}
	}
	return nil, nil
}

// AddModules adds the named modules and their dependencies
// (ResolveModules) under boot.ModuleDir, with boot.ModuleOrder listing
// them in load order, and the late ones and their dependencies not
// already listed, with boot.ModuleOrderLate listing those.
func AddModules(a *Archive, modDir string, names, late []string) error {
	mods, err := ResolveModules(modDir, names)
	if err != nil {
		return err
	}
	all, err := ResolveModules(modDir, append(slices.Clip(names), late...))
	if err != nil {
		return err
	}
	early := map[string]bool{}
	var order, lateOrder strings.Builder
	for _, m := range mods {
		early[m.Name] = true
		fmt.Fprintln(&order, filepath.Base(m.Path))
	}
	for _, m := range all {
		file := filepath.Base(m.Path)
		if err := a.AddFile(path.Join(boot.ModuleDir, file), m.Path, 0o644); err != nil {
			return err
		}
		if !early[m.Name] {
			fmt.Fprintln(&lateOrder, file)
		}
	}
	if err := a.AddData(boot.ModuleOrder, []byte(order.String()), 0o644); err != nil {
		return err
	}
	if late == nil {
		return nil
	}
	return a.AddData(boot.ModuleOrderLate, []byte(lateOrder.String()), 0o644)
}
