package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// binDir holds bin/ingest and bin/worker built for the process-level tests.
var binDir string

func TestMain(m *testing.M) {
	testenv.RunWithBinaries(m, &binDir, "stripe-webhooks/ingest", "stripe-webhooks/worker")
}

// service is a command run in-process through run().
type service struct {
	base   string
	logs   *testenv.Buffer
	cancel context.CancelFunc
	done   chan error
}

// startWorker runs the worker pool in-process until the test ends.
func startWorker(t *testing.T, b *testkit.Backend, extra map[string]string) *service {
	t.Helper()
	port := testenv.FreePort(t)
	vars := map[string]string{"WORKER_HTTP_PORT": strconv.Itoa(port)}
	for k, v := range extra {
		vars[k] = v
	}
	return startService(t, []string{"worker"}, b.Env(t, vars), fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
}

// startWebUI runs `worker webui` in-process until the test ends.
func startWebUI(t *testing.T, b *testkit.Backend, extra map[string]string) *service {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	vars := map[string]string{"WEBUI_ADDR": addr}
	for k, v := range extra {
		vars[k] = v
	}
	return startService(t, []string{"worker", "webui"}, b.Env(t, vars), "http://"+addr, "/")
}

func startService(t *testing.T, args, environ []string, base, probe string) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{base: base, logs: &testenv.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, args, environ, s.logs, s.logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("%v returned %v", args, err)
		}
	})
	testenv.Eventually(t, 15*time.Second, strings.Join(args, " ")+" to serve", func() bool {
		select {
		case err := <-s.done:
			t.Fatalf("%v returned early: %v\n%s", args, err, s.logs.String())
		default:
		}
		resp, err := http.Get(base + probe)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 500
	})
	return s
}

// process is a built binary run as a child process.
type process = testenv.Process

func startProcess(t *testing.T, name string, args []string, environ []string, base, probe string) *process {
	t.Helper()
	return testenv.StartProcess(t, filepath.Join(binDir, name), args, environ, base, probe)
}

func (s *service) get(t *testing.T, path string, header http.Header) (int, []byte) {
	t.Helper()
	return do(t, http.MethodGet, s.base+path, header)
}

func do(t *testing.T, method, url string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func post(t *testing.T, url string, payload []byte) int {
	t.Helper()
	return postWith(t, url, payload, nil)
}

// postWith delivers payload, signed, to url with the extra header h, and
// returns the status.
func postWith(t *testing.T, url string, payload []byte, h http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, testkit.Secret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
