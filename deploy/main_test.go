package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/telemetry"
	"stripe-webhooks/pkg/testenv"
)

// binDir holds bin/ingest and bin/worker, built once for these tests.
var binDir string

func TestMain(m *testing.M) {
	testenv.RunWithBinaries(m, &binDir, "stripe-webhooks/ingest", "stripe-webhooks/worker")
}

// command is what a container runs: a binary of ours and its subcommand.
type command struct {
	binary  string   // name of the built binary and of the image's /entrypoint
	args    []string // subcommand
	vars    []string // the variables its configuration reads
	load    func([]string) error
	portVar string // the variable that sets its HTTP port ("" for none)
}

// commands are the ways the binaries are run, keyed as a container's
// command line. TestCommandsExist checks each against the binaries.
var commands = map[string]command{
	"/ingest": {binary: "ingest", vars: append(config.VarNames(config.Ingest{}), telemetry.Vars...), portVar: "PORT",
		load: traced(func(e []string) error { _, err := config.LoadIngest(e); return err })},
	"/worker": {binary: "worker", vars: append(config.VarNames(config.Worker{}), telemetry.Vars...), portVar: "WORKER_HTTP_PORT",
		load: traced(func(e []string) error { _, err := config.LoadWorker(e); return err })},
	"/worker webui": {binary: "worker", args: []string{"webui"}, vars: config.VarNames(config.WebUI{}), portVar: "WEBUI_ADDR",
		load: func(e []string) error { _, err := config.LoadWebUI(e); return err }},
	"/worker migrate": {binary: "worker", args: []string{"migrate"}, vars: config.VarNames(config.Admin{}),
		load: func(e []string) error { _, err := config.LoadAdmin(e); return err }},
}

// traced is the load of a command that also traces: its OTEL_* variables
// pass telemetry.Setup's checks too.
func traced(load func([]string) error) func([]string) error {
	return func(e []string) error {
		if err := load(e); err != nil {
			return err
		}
		_, err := telemetry.Check(e)
		return err
	}
}

// runtimeVars are read by the Go runtime, not by the configuration.
var runtimeVars = map[string]bool{"GOMEMLIMIT": true}

func commandOf(t *testing.T, where string, cmdline []string) command {
	t.Helper()
	c, ok := commands[strings.Join(cmdline, " ")]
	if !ok {
		t.Fatalf("%s runs %q, which is not a command of ours", where, cmdline)
	}
	return c
}

// Each command names a binary the image's entrypoint holds and a
// subcommand the binary lists.
func TestCommandsExist(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(filepath.Join(binDir, "worker"), "help").CombinedOutput()
	if err != nil {
		t.Fatalf("worker help: %v\n%s", err, out)
	}
	for line, c := range commands {
		if _, err := os.Stat(filepath.Join(binDir, c.binary)); err != nil {
			t.Errorf("%s: no binary %s", line, c.binary)
		}
		df := dockerfile(t, c.binary)
		if df.entrypoint != "/"+c.binary {
			t.Errorf("%s: Dockerfile.%s's entrypoint is %s", line, c.binary, df.entrypoint)
		}
		for _, sub := range c.args {
			if !strings.Contains(string(out), "\n  "+sub+" ") {
				t.Errorf("%s: worker help does not list %q:\n%s", line, sub, out)
			}
		}
	}
}
