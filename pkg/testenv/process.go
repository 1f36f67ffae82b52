package testenv

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Build compiles the workspace packages (such as stripe-webhooks/ingest)
// into dir, each binary named after its package's last element.
func Build(dir string, pkgs ...string) error {
	for _, pkg := range pkgs {
		out := filepath.Join(dir, filepath.Base(pkg))
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return nil
}

// Process is a binary run as a child process for the length of a test.
type Process struct {
	Cmd  *exec.Cmd
	Base string // http://host:port the process serves
	// Logs holds the process's output when StartProcess started it (else nil).
	Logs *Buffer
	Done chan struct{} // closed when the process has exited
}

// StartProcess runs path with args and environ, kills it when the test ends,
// and waits until GET base+probe answers 200.
func StartProcess(t testing.TB, path string, args, environ []string, base, probe string) *Process {
	t.Helper()
	logs := &Buffer{}
	p, err := Launch(context.Background(), path, ProcessOptions{Args: args, Env: environ,
		Base: base, Probe: probe, Stdout: logs, Stderr: logs})
	if err != nil {
		t.Fatal(err)
	}
	p.Logs = logs
	t.Cleanup(p.Stop)
	return p
}

// ProcessOptions tune Launch.
type ProcessOptions struct {
	// Args are the arguments. Default: none.
	Args []string
	// Env is the whole environment of the process. Default: empty.
	Env []string
	// Base is http://host:port the process serves; empty: Launch returns
	// once the process has started. Default: empty.
	Base string
	// Probe is the path under Base that answers 200 once the process
	// serves, such as /healthz. Default: empty (Base itself).
	Probe string
	// Stdout and Stderr receive the process's output; nil discards it
	// without a copying goroutine in this process. Default: nil.
	Stdout, Stderr io.Writer
	// Wait bounds how long the probe may take to answer 200. Default: 15s.
	Wait time.Duration
}

// Launch runs the binary at path and waits until GET Base+Probe answers
// 200 (without a Base, it does not wait); the process is killed if ctx
// ends. It is StartProcess without a test, for tools such as the bench:
// the caller stops the process with Stop. If the process exits first or
// the probe does not answer in time, it is killed and Launch returns an
// error quoting what it wrote to a Stderr that is a *Buffer.
func Launch(ctx context.Context, path string, o ProcessOptions) (*Process, error) {
	p := &Process{Cmd: exec.CommandContext(ctx, path, o.Args...), Base: o.Base, Done: make(chan struct{})}
	p.Cmd.Env = o.Env
	p.Cmd.Stdout, p.Cmd.Stderr = o.Stdout, o.Stderr
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.Cmd.Wait(); close(p.Done) }()
	if o.Base == "" {
		return p, nil
	}
	name := filepath.Base(path)
	exited := false
	err := WaitFor(cmp.Or(o.Wait, 15*time.Second), name+" to serve", func() bool {
		select {
		case <-p.Done:
			exited = true
			return true
		default:
		}
		resp, err := http.Get(o.Base + o.Probe)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if exited {
		var logs string
		if b, ok := o.Stderr.(*Buffer); ok {
			logs = b.String()
		}
		err = fmt.Errorf("%s exited early: %v\n%s", name, p.Cmd.ProcessState, logs)
	}
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Stop kills the process and waits until it has exited.
func (p *Process) Stop() {
	_ = p.Cmd.Process.Kill()
	<-p.Done
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// RunWithBinaries is a TestMain body: it builds pkgs into a temporary
// directory, sets *dir to it, runs the tests, removes it and exits.
func RunWithBinaries(m *testing.M, dir *string, pkgs ...string) {
	d, err := os.MkdirTemp("", "sw-bin-")
	if err == nil {
		err = Build(d, pkgs...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*dir = d
	code := m.Run()
	_ = os.RemoveAll(d)
	os.Exit(code)
}
