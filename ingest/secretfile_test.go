package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

const (
	secretKey          = "STRIPE_WEBHOOK_SECRET"
	msgSecretsLoaded   = "webhook secrets reloaded"
	msgSecretsUnusable = "webhook secrets file unusable: keeping the previous secrets"
)

// secretVolume is a directory laid out like a mounted Kubernetes Secret:
// the key is a symlink through ..data, itself a symlink to a timestamped
// directory holding the real file.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T, content string) *secretVolume {
	t.Helper()
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.write(content)
	if err := os.Symlink(filepath.Join("..data", secretKey), v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

// path is what STRIPE_WEBHOOK_SECRET_FILE names.
func (v *secretVolume) path() string { return filepath.Join(v.dir, secretKey) }

// write publishes content as the kubelet does: a new timestamped directory,
// a ..data_tmp symlink to it renamed over ..data (atomic), then the previous
// directory removed.
func (v *secretVolume) write(content string) {
	v.t.Helper()
	ts := v.next()
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, ts, secretKey), []byte(content), 0o644); err != nil {
		v.t.Fatal(err)
	}
	v.swap(ts)
}

// dangle points ..data at a directory that does not exist: the key's
// symlink then leads nowhere.
func (v *secretVolume) dangle() {
	v.t.Helper()
	v.swap(v.next())
}

func (v *secretVolume) next() string {
	v.n++
	return fmt.Sprintf("..2026_11_30_%c", 'a'+v.n-1)
}

func (v *secretVolume) swap(ts string) {
	v.t.Helper()
	data, tmp := filepath.Join(v.dir, "..data"), filepath.Join(v.dir, "..data_tmp")
	previous, _ := os.Readlink(data)
	if err := os.Symlink(ts, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		v.t.Fatal(err)
	}
	if previous != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, previous)); err != nil {
			v.t.Fatal(err)
		}
	}
}

// logLines returns the JSON log lines whose msg is msg.
func logLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == msg {
			lines = append(lines, line)
		}
	}
	return lines
}

// A secret roll on a running ingest, its secrets in a Kubernetes Secret
// volume: each change is in effect within 2 s, and a file that becomes
// empty or missing leaves the last good secrets in place.
func TestSecretFileRollWithoutRestart(t *testing.T) {
	t.Parallel()
	vol := newSecretVolume(t, "whsec_old\n")
	in := start(t, options{env: map[string]string{"STRIPE_WEBHOOK_SECRET_FILE": vol.path(), "WEBHOOK_REJECT_RATE_LIMIT": "0"}})
	deliver := func(secret string) reply {
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
		return in.post(p, stripefixture.Sign(p, secret, time.Now()))
	}
	accepted := func(secret string) func() bool {
		return func() bool { return deliver(secret).status == http.StatusOK }
	}
	refused := func(secret string) func() bool {
		return func() bool {
			r := deliver(secret)
			return r.status == http.StatusBadRequest && r.body["reason"] == string(stripeevent.BadSignature)
		}
	}
	within := func(what string, cond func() bool) {
		t.Helper()
		began := time.Now()
		testenv.Eventually(t, 2*time.Second, what, cond)
		t.Logf("%s after %s", what, time.Since(began).Round(time.Millisecond))
	}

	if !accepted("whsec_old")() {
		t.Fatal("delivery signed with the secret of the file at start refused")
	}
	if !refused("whsec_new")() {
		t.Fatal("delivery signed with a secret not yet in the file accepted")
	}

	vol.write("whsec_new,whsec_old\n")
	within("new secret accepted", accepted("whsec_new"))
	if !accepted("whsec_old")() {
		t.Fatal("old secret refused while the file still lists it")
	}

	vol.write("whsec_new\n")
	within("old secret refused", refused("whsec_old"))
	if !accepted("whsec_new")() {
		t.Fatal("new secret refused once alone in the file")
	}

	vol.write("")
	testenv.Consistently(t, 3*time.Second, "new secret accepted with an empty file", accepted("whsec_new"))
	if !refused("whsec_old")() {
		t.Fatal("old secret accepted with an empty file")
	}
	if !strings.Contains(in.metricsText(), "stripe_webhooks_secret_file_usable 0") {
		t.Error("an empty secrets file does not show in stripe_webhooks_secret_file_usable")
	}
	vol.dangle()
	testenv.Consistently(t, 3*time.Second, "new secret accepted with the file missing", accepted("whsec_new"))

	vol.write("whsec_newer")
	within("secret accepted after the file is back", accepted("whsec_newer"))
	if !strings.Contains(in.metricsText(), "stripe_webhooks_secret_file_usable 1") {
		t.Error("a usable secrets file does not show in stripe_webhooks_secret_file_usable")
	}
	if !refused("whsec_new")() {
		t.Fatal("secret removed while the file was unusable still accepted")
	}

	logs := in.logs.String()
	failures := logLines(t, logs, msgSecretsUnusable)
	if len(failures) != 2 {
		t.Fatalf("%d error lines for an empty then a missing file, want one each:\n%s", len(failures), logs)
	}
	for i, want := range []string{"holds no secret", "no such file or directory"} {
		if f := failures[i]; f["level"] != "ERROR" || !strings.Contains(fmt.Sprint(f["error"]), want) || f["secrets"] != float64(1) {
			t.Errorf("error line %d = %v, want level ERROR, an error saying %q, secrets 1", i, f, want)
		}
	}
	var counts []float64
	for _, l := range logLines(t, logs, msgSecretsLoaded) {
		counts = append(counts, l["secrets"].(float64))
	}
	if fmt.Sprint(counts) != "[2 1 1]" {
		t.Errorf("reload lines give secret counts %v, want [2 1 1]", counts)
	}
	for _, secret := range []string{"whsec_old", "whsec_new"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the secret %s", secret)
		}
	}
}

// The watcher on a plain file replaced by a rename: line breaks separate
// secrets, a file without one keeps the secrets and is logged once, and Stop
// may come before Start and more than once.
func TestSecretFileWatcher(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	replace := func(content string) {
		t.Helper()
		tmp := filepath.Join(dir, "secret.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace("whsec_a")
	event := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	verifies := func(v *stripeevent.Verifier, secret string) func() bool {
		return func() bool {
			_, err := v.Verify(event, stripefixture.Sign(event, secret, time.Now()))
			return err == nil
		}
	}
	v := stripeevent.NewVerifier([]string{"whsec_a"})
	var logs bytes.Buffer
	w := newSecretFile(path, []string{"whsec_a"}, v, slog.New(slog.NewJSONHandler(&logs, nil)))
	w.poll = 10 * time.Millisecond
	w.Stop()
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	replace("whsec_b\r\n whsec_a \n")
	testenv.Eventually(t, 2*time.Second, "second secret accepted", verifies(v, "whsec_b"))
	if !verifies(v, "whsec_a")() {
		t.Fatal("first secret refused while still listed")
	}
	for _, content := range []string{" , \n,", "\n"} {
		replace(content)
		testenv.Consistently(t, 100*time.Millisecond, "both secrets accepted with "+strconv.Quote(content), func() bool {
			return verifies(v, "whsec_a")() && verifies(v, "whsec_b")()
		})
	}
	w.Stop()
	w.Stop()
	if n := len(logLines(t, logs.String(), msgSecretsUnusable)); n != 1 {
		t.Errorf("%d error lines for one failure seen twice, want 1:\n%s", n, logs.String())
	}
}
