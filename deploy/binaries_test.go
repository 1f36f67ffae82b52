package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// The manifests against the running binaries: every probe path answers 200
// on the command it probes, and every series the alerts use is exported.
func TestManifestsAgainstRunningBinaries(t *testing.T) {
	t.Parallel()
	dbURL, ns := testenv.Database(t, ""), testenv.Namespace(t, "")
	host, redisPort := testenv.RedisHostPort(t, testenv.RedisAddr())
	base := map[string]string{
		"DATABASE_URL": dbURL, "REDIS_HOST": host, "REDIS_PORT": strconv.Itoa(redisPort), "WORK_NAMESPACE": ns,
		"STRIPE_WEBHOOK_SECRET": "whsec_deploy_test", "WEBUI_USERNAME": "ops", "WEBUI_PASSWORD": "pw",
	}
	running := map[string]*testenv.Process{}
	for line, c := range commands {
		if c.portVar == "" {
			continue
		}
		port := testenv.FreePort(t)
		env := map[string]string{c.portVar: strconv.Itoa(port)}
		if c.portVar == "WEBUI_ADDR" {
			env[c.portVar] = fmt.Sprintf("127.0.0.1:%d", port)
		}
		for k, v := range base {
			env[k] = v
		}
		running[line] = testenv.StartProcess(t, filepath.Join(binDir, c.binary), c.args, pairs(env),
			fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
	}

	t.Run("probe paths are served", func(t *testing.T) {
		for _, o := range overlays {
			r := render(t, o)
			for _, d := range r.ours() {
				for _, c := range d.Spec.Template.Spec.Containers {
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
		ingest := running["/ingest"]
		payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
		req, _ := http.NewRequest(http.MethodPost, ingest.Base+"/api/billing/webhooks/stripe", bytes.NewReader(payload))
		req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, "whsec_deploy_test", time.Now()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		exported := map[string]bool{}
		family := regexp.MustCompile(`(?m)^# TYPE (\S+) `)
		for _, line := range []string{"/ingest", "/worker"} {
			resp, err := http.Get(running[line].Base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, m := range family.FindAllStringSubmatch(string(body), -1) {
				exported[m[1]] = true
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
}
