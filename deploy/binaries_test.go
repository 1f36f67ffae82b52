package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// The manifests against the running binaries: each command runs with the
// production overlay's environment of its container (the Secret's files
// laid out as the kubelet mounts them, addresses and secrets pointed at
// this test's servers); every probe path answers 200 on the command it
// probes, every series the alerts use is exported, and the ingest takes a
// rolled signing secret from its mounted file without a restart.
func TestManifestsAgainstRunningBinaries(t *testing.T) {
	t.Parallel()
	dbURL, ns := testenv.Database(t, ""), testenv.Namespace(t, "")
	host, redisPort := testenv.RedisHostPort(t, testenv.RedisAddr())
	secrets := map[string]string{"DATABASE_URL": dbURL, "STRIPE_WEBHOOK_SECRET": "whsec_deploy_test", "REDIS_PASSWORD": ""}
	prod := render(t, "production")
	running := map[string]*testenv.Process{}
	var ingestSecrets *secretDir
	for line, c := range commands {
		if c.portVar == "" {
			continue
		}
		var pod *corev1.PodSpec
		var ctr corev1.Container
		for _, d := range prod.ours() {
			for _, cc := range d.Spec.Template.Spec.Containers {
				if strings.Join(cc.Command, " ") == line {
					pod, ctr = &d.Spec.Template.Spec, cc
				}
			}
		}
		if pod == nil {
			t.Fatalf("production runs no %q", line)
		}
		env, dirs := prod.configEnviron(t, "production/"+ctr.Name, pod, ctr, secrets)
		port := testenv.FreePort(t)
		env[c.portVar] = strconv.Itoa(port)
		if c.portVar == "WEBUI_ADDR" {
			env[c.portVar] = fmt.Sprintf("127.0.0.1:%d", port)
		}
		env["REDIS_HOST"], env["REDIS_PORT"], env["WORK_NAMESPACE"] = host, strconv.Itoa(redisPort), ns
		running[line] = testenv.StartProcess(t, filepath.Join(binDir, c.binary), c.args, pairs(env),
			fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
		if line == "/ingest" {
			if _, ok := env["STRIPE_WEBHOOK_SECRET_FILE"]; !ok {
				t.Fatal("production's ingest has no STRIPE_WEBHOOK_SECRET_FILE")
			}
			for _, d := range dirs {
				if _, ok := d.files["STRIPE_WEBHOOK_SECRET"]; ok {
					ingestSecrets = d
				}
			}
		}
	}
	deliver := func(secret string) int {
		t.Helper()
		return deliverSigned(t, running["/ingest"].Base, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), secret)
	}

	t.Run("probe paths are served", func(t *testing.T) {
		for _, o := range overlays {
			r := render(t, o)
			for _, d := range r.ours() {
				for _, c := range d.Spec.Template.Spec.Containers {
					if sidecar(c) {
						continue
					}
					p := running[strings.Join(c.Command, " ")]
					for _, probe := range []string{c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path} {
						resp, err := http.Get(p.Base + probe)
						if err != nil {
							t.Fatal(err)
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							t.Errorf("%s/%s: GET %s on %q answered %d", o, d.Name, probe, c.Command, resp.StatusCode)
						}
					}
				}
			}
		}
	})

	t.Run("alerts use exported series", func(t *testing.T) {
		// One delivery, so that the ingest's per-outcome counters exist.
		if code := deliver("whsec_deploy_test"); code != http.StatusOK {
			t.Fatalf("a delivery signed with the mounted secret answered %d", code)
		}
		exported := map[string]bool{}
		family := regexp.MustCompile(`(?m)^# TYPE (\S+) `)
		bodies := map[string]string{}
		for _, line := range []string{"/ingest", "/worker"} {
			resp, err := http.Get(running[line].Base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[line] = string(body)
			for _, m := range family.FindAllStringSubmatch(string(body), -1) {
				exported[m[1]] = true
			}
		}
		// Counters of rare events (a reconcile an hour; a missing event)
		// exist at 0 from the start, in a worker with reconcile off too:
		// increase() never sees the first increment of a series born at 1,
		// and the reconcile alerts live on single increments.
		for _, sample := range []string{
			`stripe_webhooks_reconcile_runs_total{outcome="ok"} 0`,
			`stripe_webhooks_reconcile_runs_total{outcome="failed"} 0`,
			`stripe_webhooks_reconcile_missing_events_total{event_type="account.updated"} 0`,
			`stripe_webhooks_reconcile_last_success_timestamp_seconds 0`,
		} {
			if !slices.Contains(strings.Split(bodies["/worker"], "\n"), sample) {
				t.Errorf("a worker just started (reconcile off) does not export %s", sample)
			}
		}
		used := regexp.MustCompile(`stripe_webhooks_[a-z_]+`)
		r := render(t, "production")
		n := 0
		for _, g := range r.rules[0].Spec.Groups {
			for _, rule := range g.Rules {
				for _, name := range used.FindAllString(rule.Expr.String(), -1) {
					n++
					if !exported[name] {
						t.Errorf("alert %s uses %s, which neither service exports", rule.Alert, name)
					}
				}
			}
		}
		if n == 0 {
			t.Fatal("no alert uses a stripe_webhooks_ series")
		}
	})
	// Last: it changes the ingest's secret. The kubelet swaps a mounted
	// Secret's files as secretDir.update does; ingest must follow within
	// its 2 s (given 10 s here), with no restart.
	t.Run("a rolled signing secret is taken without a restart", func(t *testing.T) {
		// Polls slowly: failed verifications count against the rejection
		// rate limit (100 a minute).
		until := func(what string, cond func(code int) bool, secret string) {
			t.Helper()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
				code := deliver(secret)
				if cond(code) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 10s, %s: still answered %d", what, code)
				}
			}
		}
		ingestSecrets.update(t, map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_deploy_rolled\nwhsec_deploy_test"})
		until("ingest to accept the rolled secret", func(code int) bool { return code == http.StatusOK }, "whsec_deploy_rolled")
		if code := deliver("whsec_deploy_test"); code != http.StatusOK {
			t.Errorf("during the roll, the old secret answered %d", code)
		}
		ingestSecrets.update(t, map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_deploy_rolled"})
		until("ingest to drop the old secret", func(code int) bool {
			return code == http.StatusBadRequest || code == http.StatusTooManyRequests
		}, "whsec_deploy_test")
		select {
		case <-running["/ingest"].Done:
			t.Fatalf("ingest exited: %s", running["/ingest"].Logs.String())
		default:
		}
	})
}

// deliverSigned posts payload, signed with secret, to the webhook route of
// the ingest at base and returns the answer's status.
func deliverSigned(t *testing.T, base string, payload []byte, secret string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/billing/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, secret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
