package agent

// The protocol between the host and the agent: one JSON object per line in each
// direction over the guest's second serial port. Requests may overlap; every
// reply carries the id of its request in Reply, a field requests never have, so
// an echo of a request can never be taken for a reply.

// Request asks the agent to run a program, or a built-in when Argv[0] starts with '@'.
type Request struct {
	ID        uint64   `json:"id"`
	Argv      []string `json:"argv,omitempty"`
	Env       []string `json:"env,omitempty"`   // added to the agent's base environment
	Dir       string   `json:"dir,omitempty"`   // working directory, "/" by default
	Stdin     []byte   `json:"stdin,omitempty"` // fed to the program, then closed
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
	// Background starts the program and replies at once with its pid; its
	// output goes to LogPath (default /var/log/<name>.log).
	Background bool   `json:"background,omitempty"`
	LogPath    string `json:"log,omitempty"`
	// Cancel kills the process group of the running request ID.
	Cancel bool `json:"cancel,omitempty"`
}

// Response is the reply to one Request.
type Response struct {
	Reply  uint64 `json:"reply"`
	Exit   int    `json:"exit"` // exit status; -1 when killed by a signal or never started
	Signal string `json:"signal,omitempty"`
	Pid    int    `json:"pid,omitempty"`
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	Error  string `json:"error,omitempty"` // the agent could not run the request as asked
}

// Hello is the first line the agent writes on the protocol port once it is ready.
type Hello struct {
	Ready    bool     `json:"ready"`
	Hostname string   `json:"hostname"`
	Uptime   float64  `json:"uptime"` // guest seconds since kernel start when ready
	Warnings []string `json:"warnings,omitempty"`
}

// Disk is one SCSI generic device as the @disks built-in reports it.
type Disk struct {
	SG      string `json:"sg"`    // /dev/sg0
	Block   string `json:"block"` // /dev/sda, empty when no block driver is bound
	Host    int    `json:"host"`  // H:C:T:L from sysfs
	Channel int    `json:"channel"`
	Target  int    `json:"target"`
	LUN     int    `json:"lun"`
	Vendor  string `json:"vendor"`
	Model   string `json:"model"`
}

// Built-in commands.
const (
	BuiltinPing  = "@ping"  // replies with exit 0
	BuiltinDisks = "@disks" // stdout: JSON array of Disk
	BuiltinClock = "@clock" // stdout: the guest's wall clock, Unix nanoseconds
	BuiltinProcs = "@procs" // stdout: JSON array of Proc, every process
)

// Proc is one process of the guest, from /proc/PID/stat: read by the
// agent itself, as a script's programs each cost tens of milliseconds
// under TCG, more when real-time threads hold the guest's one CPU.
type Proc struct {
	Pid   int    `json:"pid"`
	PPid  int    `json:"ppid"`
	Comm  string `json:"comm"`
	State string `json:"state"` // R, S, D, Z, T...
}
