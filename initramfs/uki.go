package initramfs

import (
	"context"
	"debug/pe"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// UKI describes a unified kernel image: the kernel, the initramfs, the
// command line and an os-release joined onto systemd-boot's EFI stub.
type UKI struct {
	Stub, Kernel, Initrd string // files
	Cmdline, OSRelease   string // contents
	Work                 string // a directory for the small section files
}

// BuildUKI writes the UKI to out with objcopy (binutils): one section per
// part (.osrel, .cmdline, .linux, .initrd, as systemd-stub(7) names them),
// each at a virtual address after the stub's last section, aligned to the
// stub's section alignment. systemd 252's stub reads its sections from
// memory at those addresses, so they must not overlap the stub's own
// (the fixed 0x20000.. addresses of older recipes do, with this stub).
// SOURCE_DATE_EPOCH=0 keeps the PE header's time stamp fixed.
func BuildUKI(ctx context.Context, u UKI, out string) error {
	f, err := pe.Open(u.Stub)
	if err != nil {
		return fmt.Errorf("read EFI stub %s: %w (install systemd-boot-efi)", u.Stub, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return fmt.Errorf("EFI stub %s: not a PE32+ image", u.Stub)
	}
	align := uint64(oh.SectionAlignment)
	if align == 0 {
		align = 4096
	}
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}
	if err := os.MkdirAll(u.Work, 0o755); err != nil {
		return err
	}
	osrel, cmdline := filepath.Join(u.Work, "osrel"), filepath.Join(u.Work, "cmdline")
	if err := os.WriteFile(osrel, []byte(u.OSRelease), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cmdline, []byte(u.Cmdline), 0o644); err != nil {
		return err
	}
	args := []string{}
	addr := alignUp(end, align)
	for _, s := range []struct{ name, file string }{
		{".osrel", osrel}, {".cmdline", cmdline}, {".linux", u.Kernel}, {".initrd", u.Initrd},
	} {
		st, err := os.Stat(s.file)
		if err != nil {
			return fmt.Errorf("UKI section %s: %w", s.name, err)
		}
		args = append(args,
			"--add-section", s.name+"="+s.file,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.name, oh.ImageBase+addr))
		addr = alignUp(addr+uint64(st.Size()), align)
	}
	tmp := out + ".tmp"
	args = append(args, u.Stub, tmp)
	cmd := exec.CommandContext(ctx, "objcopy", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("objcopy (binutils) the UKI: %w\n%s", err, b)
	}
	return os.Rename(tmp, out)
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }
