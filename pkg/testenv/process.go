package testenv

import (
	"fmt"
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
	Logs *Buffer
	Done chan struct{} // closed when the process has exited
}

// StartProcess runs path with args and environ, kills it when the test ends,
// and waits until GET base+probe answers 200.
func StartProcess(t testing.TB, path string, args, environ []string, base, probe string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(path, args...), Base: base, Logs: &Buffer{}, Done: make(chan struct{})}
	p.Cmd.Env = environ
	p.Cmd.Stdout, p.Cmd.Stderr = p.Logs, p.Logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.Done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.Done
	})
	name := filepath.Base(path)
	Eventually(t, 15*time.Second, name+" to serve", func() bool {
		select {
		case <-p.Done:
			t.Fatalf("%s exited early: %v\n%s", name, p.Cmd.ProcessState, p.Logs.String())
		default:
		}
		resp, err := http.Get(base + probe)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

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
