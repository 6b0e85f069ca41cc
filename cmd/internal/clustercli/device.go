package clustercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

// One way to name a LUN in every command that takes one (cluster disk,
// cluster quorum, cluster log --device): a Linux SCSI device node or an
// iSCSI logical unit, opened by openDevice, with --initiator-name applied
// by openLUN, and one error text for a bad one.

// deviceForms are the forms of DEVICE, as the errors name them.
const deviceForms = "/dev/sdX, /dev/sgN or iscsi://host[:port]/target-iqn/lun"

// deviceHelp and initiatorHelp are the usage text of DEVICE and of
// --initiator-name, the same in every command that takes a LUN.
const deviceHelp = `DEVICE is /dev/sdX or /dev/sgN (SG_IO), or iscsi://host[:port]/target-iqn/lun
(the built-in iSCSI initiator; see --initiator-name).`

const initiatorHelp = `  --initiator-name IQN
                iSCSI DEVICE only: the initiator name to log in as (default:
                InitiatorName from /etc/iscsi/initiatorname.iscsi, else
                iqn.2024-01.dev.wolfpack:<hostname>). The target keys
                registrations on it. tgt also binds them to the session,
                which ends when the command does: see docs/iscsi.md.
`

// openLUN opens dev through open and, for an iSCSI DEVICE, sets the
// initiator name (empty: the default). A bad DEVICE or initiator name is
// a usage error naming it, before anything is sent.
func openLUN(open opener, dev, initiatorName string) (scsi.Device, error) {
	if initiatorName != "" {
		if !isISCSIAddr(dev) {
			return nil, usagef("--initiator-name applies to iscsi:// devices only, not %s", dev)
		}
		if err := iscsi.ValidateName(initiatorName); err != nil {
			return nil, usagef("--initiator-name: %v", err)
		}
	}
	d, err := open(dev)
	if err != nil {
		return nil, err
	}
	if initiatorName != "" {
		id, ok := d.(interface{ setInitiatorName(string) })
		if !ok {
			d.Close()
			return nil, usagef("--initiator-name: %s does not take an initiator name", dev)
		}
		id.setInitiatorName(initiatorName)
	}
	return d, nil
}

// lunError reports openLUN's error for the command cmd ("disk keys",
// "log"): a
// usage error as one (exit 2), anything else as the command reports a
// failed action.
func lunError(stdout io.Writer, asJSON bool, cmd, dev string, err error) error {
	var ue usageError
	if errors.As(err, &ue) {
		return usagef("%s: %v", cmd, ue)
	}
	action := cmd
	if _, a, ok := strings.Cut(cmd, " "); ok {
		action = a
	}
	return report(stdout, asJSON, dev, action, err)
}

// opener opens a device address. main uses openDevice; tests pass one that
// returns in-memory nexuses.
type opener func(addr string) (scsi.Device, error)

// openDevice opens a Linux SCSI device node (/dev/sdX, /dev/sgN, SG_IO) or
// an iSCSI logical unit (iscsi://host[:port]/target-iqn/lun, through the
// userspace initiator in scsi/iscsi, as defaultInitiatorName()).
func openDevice(addr string) (scsi.Device, error) {
	switch {
	case strings.HasPrefix(addr, "/dev/"):
		return scsi.OpenSGIO(addr)
	case isISCSIAddr(addr):
		a, err := iscsi.ParseAddress(addr)
		if err != nil {
			return nil, usagef("DEVICE %q: %s", addr, strings.TrimPrefix(err.Error(), fmt.Sprintf("iscsi: address %q: ", addr)))
		}
		return &iscsiDevice{addr: a, cfg: iscsi.Config{InitiatorName: defaultInitiatorName()}}, nil
	}
	return nil, usagef("DEVICE %q: not a device (want %s)", addr, deviceForms)
}

func isISCSIAddr(addr string) bool { return strings.HasPrefix(addr, "iscsi://") }

// iscsiDevice is an iSCSI logical unit that logs in at its first command,
// under that command's context (an opener has none, and the login belongs
// inside --timeout), as the initiator --initiator-name names.
type iscsiDevice struct {
	addr iscsi.Address
	cfg  iscsi.Config

	mu sync.Mutex
	s  *iscsi.Session
}

// setInitiatorName replaces the default initiator name before the login.
func (d *iscsiDevice) setInitiatorName(name string) { d.cfg.InitiatorName = name }

func (d *iscsiDevice) session(ctx context.Context) (*iscsi.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.s != nil {
		return d.s, nil
	}
	s, err := iscsi.Dial(ctx, d.addr, d.cfg) // its errors name the address and the initiator
	if err != nil {
		return nil, err
	}
	d.s = s
	return s, nil
}

func (d *iscsiDevice) Execute(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	s, err := d.session(ctx)
	if err != nil {
		return scsi.Response{}, err
	}
	return s.Execute(ctx, cmd)
}

// Close logs out. tgt binds registrations to the session, so on tgt a key
// registered through this session no longer admits the next invocation's
// session (docs/iscsi.md).
func (d *iscsiDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.s == nil {
		return nil
	}
	return d.s.Close()
}

// initiatorNameFile is where open-iscsi keeps the host's initiator name.
const initiatorNameFile = "/etc/iscsi/initiatorname.iscsi"

// defaultInitiatorName is the InitiatorName of /etc/iscsi/initiatorname.iscsi
// (so that the target sees this host under the name its kernel initiator
// uses), else iqn.2024-01.dev.wolfpack:<hostname>.
func defaultInitiatorName() string {
	if b, err := os.ReadFile(initiatorNameFile); err == nil {
		if n := parseInitiatorNameFile(string(b)); n != "" {
			return n
		}
	}
	h, _ := os.Hostname()
	return hostInitiatorName(h)
}

// parseInitiatorNameFile returns the InitiatorName= value of an open-iscsi
// initiatorname.iscsi file, or "" if it has none or an invalid one.
func parseInitiatorNameFile(s string) string {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "InitiatorName="); ok {
			v = strings.TrimSpace(v)
			if iscsi.ValidateName(v) == nil {
				return v
			}
		}
	}
	return ""
}

// hostInitiatorName makes an iSCSI name from a host name: lowercase, and
// any character an iqn may not hold becomes '-'.
func hostInitiatorName(host string) string {
	b := []byte(strings.ToLower(host))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		b = []byte("localhost")
	}
	if len(b) > 180 {
		b = b[:180]
	}
	return "iqn.2024-01.dev.wolfpack:" + string(b)
}
