// Package transcript runs data-driven tests from text files, in the shape
// of etcd raft's testdata: each case is a command line, optional input
// lines, a line "----", and the expected output up to a blank line (or an
// output block fenced by "----" lines when it holds blank lines). Lines
// starting with # are comments: a case cites the paper section or the
// SPC-4 clause it checks there. With -rewrite the files are rewritten
// with the actual output.
package transcript

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite transcript files with the actual output")

// Case is one command of a transcript.
type Case struct {
	Pos   string   // file:line
	Cmd   string   // the first word
	Args  []string // the other words of the command line
	Input []string // lines between the command and "----"
}

// Arg returns the value of key=value among the arguments, or "".
func (c Case) Arg(key string) string {
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// Run runs every case of path through f and compares f's output with the
// expected output.
func Run(t *testing.T, path string, f func(t *testing.T, c Case) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			out.WriteString(l + "\n")
			i++
			continue
		}
		c := Case{Pos: fmt.Sprintf("%s:%d", path, i+1)}
		fields := strings.Fields(l)
		c.Cmd, c.Args = fields[0], fields[1:]
		out.WriteString(l + "\n")
		i++
		for i < len(lines) && lines[i] != "----" {
			if strings.TrimSpace(lines[i]) == "" {
				t.Fatalf("%s: a blank line before ----", c.Pos)
			}
			c.Input = append(c.Input, lines[i])
			out.WriteString(lines[i] + "\n")
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s: no ---- after the command", c.Pos)
		}
		i++
		var want []string
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			want = append(want, lines[i])
			i++
		}
		got := strings.TrimRight(f(t, c), "\n")
		out.WriteString("----\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
		if exp := strings.Join(want, "\n"); got != exp && !*rewrite {
			t.Errorf("%s: %s %s\n got:\n%s\nwant:\n%s", c.Pos, c.Cmd, strings.Join(c.Args, " "), indent(got), indent(exp))
		}
	}
	if *rewrite {
		s := strings.TrimRight(out.String(), "\n") + "\n"
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func indent(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		b.WriteString("    " + sc.Text() + "\n")
	}
	return b.String()
}
