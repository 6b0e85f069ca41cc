package initramfs

import (
	"context"
	"debug/pe"
	"encoding/binary"
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
// objcopy stamps the PE header with the time of the build (binutils 2.40
// ignores SOURCE_DATE_EPOCH there): the stamp is set back to the stub's
// and the PE checksum recomputed, so the same inputs give the same bytes.
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
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("objcopy (binutils) the UKI: %w\n%s", err, b)
	}
	b, err := os.ReadFile(tmp)
	if err == nil {
		err = fixPEHeader(b, f.FileHeader.TimeDateStamp)
	}
	if err == nil {
		err = os.WriteFile(tmp, b, 0o644)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("UKI %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// fixPEHeader sets a PE image's time stamp and recomputes its checksum
// (the 16-bit one's-complement sum of the file with the checksum field
// taken as zero, plus the file's length, as Microsoft's PE format
// defines it).
func fixPEHeader(b []byte, stamp uint32) error {
	if len(b) < 0x40 {
		return fmt.Errorf("not a PE image: %d bytes", len(b))
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if pe+24+68 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return fmt.Errorf("not a PE image: no PE signature at %#x", pe)
	}
	binary.LittleEndian.PutUint32(b[pe+8:], stamp) // COFF header: Machine, NumberOfSections, TimeDateStamp
	sumAt := pe + 24 + 64                          // the optional header's CheckSum
	binary.LittleEndian.PutUint32(b[sumAt:], 0)
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	binary.LittleEndian.PutUint32(b[sumAt:], uint32(sum)+uint32(len(b)))
	return nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }
