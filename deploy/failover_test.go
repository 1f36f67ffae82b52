package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// sentinelOverlays include components/redis-sentinel.
var sentinelOverlays = map[string]bool{"production-sentinel": true}

// sentinelVars are what components/redis-sentinel sets on each container
// that uses Redis.
var sentinelVars = []string{"REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD_FILE"}

// redisOf is the Redis configuration the command line loads from env, or
// nil for a command that does not use Redis.
func redisOf(t *testing.T, where, line string, env []string) *config.Redis {
	t.Helper()
	var rd config.Redis
	var err error
	switch line {
	case "/ingest":
		var c config.Ingest
		c, err = config.LoadIngest(env)
		rd = c.Redis
	case "/worker":
		var c config.Worker
		c, err = config.LoadWorker(env)
		rd = c.Redis
	case "/worker webui":
		var c config.WebUI
		c, err = config.LoadWebUI(env)
		rd = c.Redis
	default:
		return nil
	}
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return &rd
}

// With components/redis-sentinel, every container whose command uses Redis
// (ingest, worker, web UI; not migrate) finds it through the same
// sentinels, by the same master name, with the sentinels' password read
// from the Secret's key REDIS_SENTINEL_PASSWORD, mounted like the other
// secrets beside REDIS_PASSWORD; each variable is one its command reads.
// Without the component, no container has any of them.
func TestSentinelComponentReachesEveryRedisUser(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		var users []string
		var addrs []string
		var master string
		for _, d := range r.ours() {
			for _, c := range containers(d) {
				if sidecar(c) {
					continue
				}
				where := o + "/" + d.Name + "/" + c.Name
				line := strings.Join(c.Command, " ")
				cmd := commandOf(t, where, c.Command)
				env := r.environ(t, c)
				usesRedis := slices.Contains(cmd.vars, "REDIS_HOST")
				missing := false
				for _, v := range sentinelVars {
					_, set := env[v]
					missing = missing || !set
					switch {
					case usesRedis && !slices.Contains(cmd.vars, v):
						t.Errorf("%s: %q uses Redis but does not read %s", where, c.Command, v)
					case set && !usesRedis:
						t.Errorf("%s sets %s, but %q does not use Redis", where, v, c.Command)
					case set && !sentinelOverlays[o]:
						t.Errorf("%s sets %s without components/redis-sentinel", where, v)
					case !set && usesRedis && sentinelOverlays[o]:
						t.Errorf("%s: %q uses Redis, but components/redis-sentinel does not set its %s", where, c.Command, v)
					}
				}
				if !usesRedis || !sentinelOverlays[o] || missing {
					continue
				}
				users = append(users, d.Name)
				pod := &d.Spec.Template.Spec
				cenv, _ := r.configEnviron(t, where, pod, c, map[string]string{"REDIS_SENTINEL_PASSWORD": "sentinel-password"})
				rd := redisOf(t, where, line, pairs(cenv))
				if !rd.UsesSentinel() || rd.SentinelMaster == "" || rd.SentinelPassword != "sentinel-password" {
					t.Errorf("%s: the command's configuration does not use Sentinel (addresses %q, master %q) with the Secret's sentinel password",
						where, rd.SentinelAddrs, rd.SentinelMaster)
				}
				for _, a := range rd.SentinelAddrs {
					if _, port, _ := net.SplitHostPort(a); port != strconv.Itoa(sentinelPort) {
						t.Errorf("%s: sentinel %s is not on port %d, the one the worker's NetworkPolicy opens", where, a, sentinelPort)
					}
				}
				if addrs == nil {
					addrs, master = rd.SentinelAddrs, rd.SentinelMaster
				} else if !slices.Equal(addrs, rd.SentinelAddrs) || master != rd.SentinelMaster {
					t.Errorf("%s asks sentinels %q for %q, another container %q for %q", where, rd.SentinelAddrs, rd.SentinelMaster, addrs, master)
				}
				// The sentinels' password sits beside the master's, in the
				// same mounted Secret directory.
				_, vol, _, _, err := secretFile(pod, c, env["REDIS_SENTINEL_PASSWORD_FILE"])
				_, pvol, _, _, perr := secretFile(pod, c, env["REDIS_PASSWORD_FILE"])
				if err != nil || perr != nil || vol != pvol || path.Dir(env["REDIS_SENTINEL_PASSWORD_FILE"]) != path.Dir(env["REDIS_PASSWORD_FILE"]) {
					t.Errorf("%s: REDIS_SENTINEL_PASSWORD_FILE %s is not mounted as REDIS_PASSWORD_FILE %s is (%v, %v)",
						where, env["REDIS_SENTINEL_PASSWORD_FILE"], env["REDIS_PASSWORD_FILE"], err, perr)
				}
			}
		}
		slices.Sort(users)
		if sentinelOverlays[o] && !slices.Equal(users, []string{"stripe-webhooks-ingest", "stripe-webhooks-webui", "stripe-webhooks-worker"}) {
			t.Errorf("%s: components/redis-sentinel reaches %v, want ingest, web UI and worker", o, users)
		}
	}
}

// production-sentinel against the running binaries: ingest, worker and web
// UI run with the environment of their containers, pointed at three real
// sentinels watching a master and its replica, with REDIS_HOST:REDIS_PORT
// pointing at a port where nothing listens. Each reaches Redis, and a
// delivery is queued by the ingest and applied by the worker through the
// master the sentinels name, well before the sweeper could have queued it.
func TestSentinelOverlayAgainstRunningBinaries(t *testing.T) {
	t.Parallel()
	sentinels := testenv.StartRedisSentinel(t)
	dbURL := testenv.Database(t, "")
	ns := testenv.Namespace(t, sentinels.Master())
	nothing := testenv.FreePort(t)
	const signing = "whsec_deploy_sentinel"
	secrets := map[string]string{"DATABASE_URL": dbURL, "STRIPE_WEBHOOK_SECRET": signing,
		"REDIS_PASSWORD": "", "REDIS_SENTINEL_PASSWORD": "", "WEBUI_PASSWORD": "deploy-test"}
	r := render(t, "production-sentinel")
	running := map[string]*testenv.Process{}
	var webuiUser string
	for _, d := range r.ours() {
		c := d.Spec.Template.Spec.Containers[0]
		line := strings.Join(c.Command, " ")
		where := "production-sentinel/" + d.Name + "/" + c.Name
		cmd := commandOf(t, where, c.Command)
		env, _ := r.configEnviron(t, where, &d.Spec.Template.Spec, c, secrets)
		for _, v := range sentinelVars {
			if _, ok := env[v]; !ok {
				t.Fatalf("%s has no %s", where, v)
			}
		}
		env["REDIS_SENTINEL_ADDRS"] = strings.Join(sentinels.SentinelAddrs(), ",")
		env["REDIS_SENTINEL_MASTER"] = sentinels.MasterName
		env["REDIS_HOST"], env["REDIS_PORT"] = "127.0.0.1", strconv.Itoa(nothing)
		env["WORK_NAMESPACE"] = ns
		port := testenv.FreePort(t)
		env[cmd.portVar] = strconv.Itoa(port)
		if cmd.portVar == "WEBUI_ADDR" {
			env[cmd.portVar] = fmt.Sprintf("127.0.0.1:%d", port)
			webuiUser = env["WEBUI_USERNAME"]
		}
		// The readiness probe: the worker's needs Redis.
		running[line] = testenv.StartProcess(t, filepath.Join(binDir, cmd.binary), cmd.args, pairs(env),
			fmt.Sprintf("http://127.0.0.1:%d", port), c.ReadinessProbe.HTTPGet.Path)
	}
	get := func(url string, user, password string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := get(running["/worker"].Base+"/readyz", "", ""); code != http.StatusOK || body["redis"] != "up" {
		t.Errorf("worker /readyz: %d %v", code, body)
	}
	testenv.Eventually(t, 10*time.Second, "the ingest's /health to see Redis up", func() bool {
		_, body := get(running["/ingest"].Base+"/health", "", "")
		return body["redis"] == "up"
	})
	// The job UI's queue list comes from Redis.
	if code, _ := get(running["/worker webui"].Base+"/queues", webuiUser, secrets["WEBUI_PASSWORD"]); code != http.StatusOK {
		t.Errorf("web UI /queues answered %d", code)
	}

	id := stripefixture.NewEventID()
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: id, Live: true})
	if code := deliverSigned(t, running["/ingest"].Base, payload, signing); code != http.StatusOK {
		t.Fatalf("delivery answered %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	// The sweeper waits WEBHOOK_SWEEP_AFTER (60s) before queuing an event
	// again: applied sooner, the event went through the ingest's enqueue.
	testenv.Eventually(t, 20*time.Second, "the worker to apply the delivered event", func() bool {
		var processed bool
		err := db.QueryRow(ctx, "SELECT processed FROM webhook_events WHERE stripe_event_id = $1", id).Scan(&processed)
		return err == nil && processed
	})
	for line, p := range running {
		select {
		case <-p.Done:
			t.Errorf("%s exited: %s", line, p.Logs.String())
		default:
		}
	}
}

// multiHostExamples are the multi-host DATABASE_URLs the manifests' comments
// document, by file.
func multiHostExamples(t *testing.T) map[string][]string {
	t.Helper()
	re := regexp.MustCompile(`postgres://\S+`)
	out := map[string][]string{}
	for _, file := range []string{"secret.template.yaml", "overlays/production/kustomization.yaml"} {
		b, err := os.ReadFile(filepath.Join("kubernetes", file))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			comment, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
			if !ok {
				continue
			}
			for _, u := range re.FindAllString(comment, -1) {
				if authority, _, _ := strings.Cut(strings.TrimPrefix(u, "postgres://"), "/"); strings.Contains(authority, ",") {
					out[file] = append(out[file], u)
				}
			}
		}
		if len(out[file]) == 0 {
			t.Errorf("kubernetes/%s documents no multi-host DATABASE_URL", file)
		}
	}
	return out
}

// The multi-host DATABASE_URL the production overlay and the Secret's
// template document is what pgx takes for failover: several hosts, tried in
// order, a standby skipped (target_session_attrs=read-write), a bound on
// each attempt, TLS verified against each host's own name; every command
// accepts it, and the worker's egress reaches every host.
func TestMultiHostDatabaseURLAsDocumented(t *testing.T) {
	t.Parallel()
	prod := render(t, "production")
	worker := prod.deployment(t, "stripe-webhooks-worker")
	rules, _ := prod.egressRules(t, worker)
	ns := prod.namespaces[0].Name
	for file, urls := range multiHostExamples(t) {
		for _, u := range urls {
			where := file + ": " + u
			hosts := databaseTargets(t, where, u)
			if len(hosts) < 2 {
				t.Errorf("%s: pgx finds %d host", where, len(hosts))
			}
			pc, err := pgconn.ParseConfig(u)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if pc.ValidateConnect == nil || reflect.ValueOf(pc.ValidateConnect).Pointer() != reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer() {
				t.Errorf("%s: a standby would be taken: want target_session_attrs=read-write", where)
			}
			if pc.ConnectTimeout <= 0 || pc.ConnectTimeout > 30*time.Second {
				t.Errorf("%s: connect_timeout %s: want a few seconds, so that a dead host does not hold the next back", where, pc.ConnectTimeout)
			}
			for _, fc := range append([]*pgconn.FallbackConfig{{Host: pc.Host, Port: pc.Port, TLSConfig: pc.TLSConfig}}, pc.Fallbacks...) {
				if fc.TLSConfig == nil || fc.TLSConfig.InsecureSkipVerify || fc.TLSConfig.ServerName != fc.Host {
					t.Errorf("%s: %s:%d is reached without TLS verified against its name (want sslmode=verify-full)", where, fc.Host, fc.Port)
				}
			}
			for line, c := range commands {
				if !slices.Contains(c.vars, "DATABASE_URL") {
					continue
				}
				env := []string{"DATABASE_URL=" + u, "STRIPE_WEBHOOK_SECRET=whsec_x"}
				if err := c.load(env); err != nil && strings.Contains(err.Error(), "DATABASE_URL") {
					t.Errorf("%s: %q refuses it: %v", where, line, err)
				}
			}
			for _, h := range hosts {
				if !allows(t, rules, ns, destination{proto: corev1.ProtocolTCP, port: h.port}) {
					t.Errorf("%s: the worker's egress policy does not allow %s:%d", where, h.host, h.port)
				}
			}
		}
	}
}

// The documented multi-host form against real servers: a primary and its
// standby, the standby listed first. `worker migrate` (which writes) with
// the documented parameters skips the standby and migrates the primary;
// without target_session_attrs it lands on the standby and fails.
func TestMultiHostDatabaseURLFindsThePrimary(t *testing.T) {
	t.Parallel()
	var documented string
	for _, urls := range multiHostExamples(t) {
		documented = urls[0]
	}
	doc, err := url.Parse(documented)
	if err != nil {
		t.Fatal(err)
	}
	pair := testenv.StartPostgresPair(t)
	db := testenv.RandomName("swdeploy_")
	pair.CreateDatabase(db)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The standby acknowledged the CREATE DATABASE's WAL, but may not have
	// replayed it yet; pgx tries no further host after "database does not
	// exist".
	testenv.Eventually(t, 20*time.Second, "the standby to have the database", func() bool {
		c, err := pgx.Connect(ctx, pair.HostURL(pair.StandbyPort, db))
		if err == nil {
			_ = c.Close(ctx)
		}
		return err == nil
	})
	// The documented URL with the test servers: their hosts (standby
	// first), their database, and no TLS, which they do not offer.
	u := *doc
	u.User = url.User("postgres")
	u.Host = fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", pair.StandbyPort, pair.PrimaryPort)
	u.Path = "/" + db
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()

	migrate := func(dbURL string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(binDir, "worker"), "migrate")
		cmd.Env = []string{"DATABASE_URL=" + dbURL}
		return cmd.CombinedOutput()
	}
	q.Del("target_session_attrs")
	without := u
	without.RawQuery = q.Encode()
	// (The store drops a connection a standby refused a write on, so the
	// error names a bad connection rather than the read-only transaction.)
	if out, err := migrate(without.String()); err == nil {
		t.Errorf("worker migrate without target_session_attrs succeeded on the standby listed first:\n%s", out)
	}
	if out, err := migrate(u.String()); err != nil {
		t.Fatalf("worker migrate with the documented URL: %v\n%s", err, out)
	}
	c, err := pgx.Connect(ctx, pair.HostURL(pair.PrimaryPort, db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var table *string
	if err := c.QueryRow(ctx, "SELECT to_regclass('webhook_events')::text").Scan(&table); err != nil || table == nil {
		t.Errorf("the primary has no webhook_events after migrate: %v", err)
	}
}
