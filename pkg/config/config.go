// Package config reads the services' settings from the environment.
//
// Each command loads only the struct it needs (see DESIGN.md: STRIPE_WEBHOOK_SECRET
// is the ingest's alone, `migrate` needs only DATABASE_URL, `webui` only Redis).
// A missing or malformed variable is reported as an *Error naming it; the
// binaries print that one line and exit with code 2.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Database is the Postgres connection.
type Database struct {
	// URL is the Postgres connection URL.
	// Default: postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable.
	URL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable"`
}

// Redis is the Redis connection and the gocraft/work namespace in it.
type Redis struct {
	// Host of the Redis server. Default: 127.0.0.1.
	Host string `env:"REDIS_HOST" envDefault:"127.0.0.1"`
	// Port of the Redis server. Default: 6379.
	Port int `env:"REDIS_PORT" envDefault:"6379"`
	// Password for AUTH; empty sends none. Default: empty.
	Password string `env:"REDIS_PASSWORD"`
	// DB is the Redis database number. Default: 0.
	DB int `env:"REDIS_DB" envDefault:"0"`
	// Namespace is the gocraft/work key namespace. Default: stripe-webhooks.
	Namespace string `env:"WORK_NAMESPACE" envDefault:"stripe-webhooks"`
	// SentinelAddrs are Redis Sentinel addresses (host:port, comma-separated);
	// when set, the master is found through them and REDIS_HOST and
	// REDIS_PORT are ignored. Default: none.
	SentinelAddrs []string `env:"REDIS_SENTINEL_ADDRS" envSeparator:","`
	// SentinelMaster is the name the sentinels monitor the master under;
	// required with REDIS_SENTINEL_ADDRS. Default: none.
	SentinelMaster string `env:"REDIS_SENTINEL_MASTER"`
	// SentinelPassword is the sentinels' own password (requirepass of the
	// sentinels); REDIS_PASSWORD still applies to the master. Default: none.
	SentinelPassword string `env:"REDIS_SENTINEL_PASSWORD"`
}

// UsesSentinel reports whether the master is found through Sentinel.
func (r Redis) UsesSentinel() bool { return len(r.SentinelAddrs) > 0 }

// Addr is host:port of the Redis server named by REDIS_HOST and REDIS_PORT
// (unused with Sentinel).
func (r Redis) Addr() string { return fmt.Sprintf("%s:%d", r.Host, r.Port) }

// Livemode chooses which of Stripe's modes a deployment applies.
type Livemode struct {
	// Mode is live, test or any: events of the other mode are stored and
	// answered 200, but never applied. Default: any.
	Mode string `env:"STRIPE_LIVEMODE" envDefault:"any"`
}

// Applies reports whether an event of the given livemode is applied.
func (l Livemode) Applies(livemode bool) bool {
	switch l.Mode {
	case "live":
		return livemode
	case "test":
		return !livemode
	}
	return true
}

// StripeAPI is the connection to Stripe's API, for reconcile and resync.
type StripeAPI struct {
	// Key is a restricted API key (read access to Events and Connect
	// accounts); empty turns periodic reconcile off. Default: empty.
	Key string `env:"STRIPE_API_KEY"`
	// Base is where requests go (tests, a proxy). Default: https://api.stripe.com.
	Base string `env:"STRIPE_API_BASE" envDefault:"https://api.stripe.com"`
	// Rate is the most requests per second one process sends. Default: 20.
	Rate float64 `env:"STRIPE_API_RATE" envDefault:"20"`
}

// Log is the logging setup shared by every command.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `env:"LOG_LEVEL" envDefault:"info"`
}

// Ingest is the configuration of bin/ingest.
type Ingest struct {
	Database
	Redis
	Log
	Livemode
	// WebhookSecrets are the endpoint signing secrets (whsec_…); several during a
	// secret roll, comma-separated (or one a line in STRIPE_WEBHOOK_SECRET_FILE).
	// Required, no default.
	WebhookSecrets []string `env:"STRIPE_WEBHOOK_SECRET" envSeparator:","`
	// WebhookSecretFile is the file the secrets were read from, if any; the
	// ingest reads it again when it changes. Default: none.
	WebhookSecretFile string `env:"STRIPE_WEBHOOK_SECRET_FILE"`
	// IPAllowlist is "stripe" (Stripe's published webhook addresses) or
	// comma-separated IPs and CIDRs; deliveries from other addresses get
	// 403. Default: empty, every address.
	IPAllowlist []string `env:"STRIPE_IP_ALLOWLIST" envSeparator:","`
	// IPAllowlistFile is the file the allowlist was read from, if any; the
	// ingest reads it again when it changes. Default: none.
	IPAllowlistFile string `env:"STRIPE_IP_ALLOWLIST_FILE"`
	// HTTPPort is the HTTP port. Default: 8080.
	HTTPPort int `env:"PORT" envDefault:"8080"`
	// MaxBodyBytes is the largest accepted delivery; larger ones get 413. Default: 1048576.
	MaxBodyBytes int64 `env:"WEBHOOK_MAX_BODY_BYTES" envDefault:"1048576"`
	// RejectRateLimit is how many requests failing verification one client
	// address may make per minute; 0 turns the limit off. Default: 100.
	RejectRateLimit int `env:"WEBHOOK_REJECT_RATE_LIMIT" envDefault:"100"`
	// TrustedProxies are the proxies (IPs or CIDRs, comma-separated) whose
	// X-Forwarded-For is believed when finding the client address. Default: none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	// ShutdownTimeout bounds how long in-flight requests may take after SIGTERM. Default: 25s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	// EnqueueTimeout bounds how long a committed batch waits for Redis to
	// take its jobs before its deliveries are answered anyway (the sweeper
	// queues them later). Default: 250ms.
	EnqueueTimeout time.Duration `env:"WEBHOOK_ENQUEUE_TIMEOUT" envDefault:"250ms"`
	// BodyTimeout bounds how long a delivery's body may take to arrive once
	// its headers have. Default: 10s.
	BodyTimeout time.Duration `env:"WEBHOOK_BODY_TIMEOUT" envDefault:"10s"`
}

// Worker is the configuration of bin/worker (the pool).
type Worker struct {
	Database
	Redis
	Log
	Livemode
	// Concurrency is the number of jobs processed at once per process. Default: 5.
	Concurrency int `env:"WEBHOOK_WORKER_CONCURRENCY" envDefault:"5"`
	// MaxRetries is the number of attempts in all (gocraft/work MaxFails). Default: 5.
	MaxRetries int `env:"WEBHOOK_MAX_RETRIES" envDefault:"5"`
	// RetryBaseDelay is the backoff base: base × 2^(fails-1). Default: 60s.
	RetryBaseDelay time.Duration `env:"WEBHOOK_RETRY_BASE_DELAY" envDefault:"60s"`
	// JobTimeout is the deadline of one job. Default: 30s.
	JobTimeout time.Duration `env:"WEBHOOK_JOB_TIMEOUT" envDefault:"30s"`
	// HTTPPort serves /healthz, /readyz and /metrics. Default: 8081.
	HTTPPort int `env:"WORKER_HTTP_PORT" envDefault:"8081"`
	// SweepInterval is how often the sweeper looks for unqueued events. Default: 30s.
	SweepInterval time.Duration `env:"WEBHOOK_SWEEP_INTERVAL" envDefault:"30s"`
	// SweepAfter is how old an unprocessed event must be before the sweeper enqueues it again. Default: 60s.
	SweepAfter time.Duration `env:"WEBHOOK_SWEEP_AFTER" envDefault:"60s"`
	// Retention is how long processed events are kept; 0 keeps them forever. Default: 720h.
	Retention time.Duration `env:"WEBHOOK_RETENTION" envDefault:"720h"`
	StripeAPI
	// ReconcileInterval is how often one replica reconciles events with
	// Stripe's API, when STRIPE_API_KEY is set. Default: 1h.
	ReconcileInterval time.Duration `env:"STRIPE_RECONCILE_INTERVAL" envDefault:"1h"`
	// ResyncDebounce is how long after a same-second tie that the events
	// could not settle the account is resynced from Stripe's API, when
	// STRIPE_API_KEY is set (so that a burst of such events settles first).
	// Default: 30s.
	ResyncDebounce time.Duration `env:"STRIPE_RESYNC_DEBOUNCE" envDefault:"30s"`
}

// Reconcile is the configuration of `bin/worker reconcile` and `resync`.
type Reconcile struct {
	Database
	Redis
	Log
	Livemode
	StripeAPI
	// Retention is the workers' WEBHOOK_RETENTION: reconcile never reaches
	// back past it, where an event applied and deleted would look missing.
	// 0 keeps events forever. Default: 720h.
	Retention time.Duration `env:"WEBHOOK_RETENTION" envDefault:"720h"`
}

// WebUI is the configuration of `bin/worker webui`: the gocraft/work job
// UI reads Redis, its console reads Postgres.
type WebUI struct {
	Database
	Redis
	Log
	// Livemode is what the console's replay applies, as the workers do.
	Livemode
	// Addr is where the authenticating proxy listens. Default: 127.0.0.1:5040.
	Addr string `env:"WEBUI_ADDR" envDefault:"127.0.0.1:5040"`
	// LoginUser is the HTTP basic auth user; empty means no login (loopback only). Default: empty.
	LoginUser string `env:"WEBUI_USERNAME"`
	// LoginPassword is the HTTP basic auth password. Default: empty.
	LoginPassword string `env:"WEBUI_PASSWORD"`
}

// Admin is the configuration of the commands that need only the database:
// `bin/worker migrate` and `bin/worker replay`.
type Admin struct {
	Database
	Log
	Livemode
}

// MinRetention is the shortest WEBHOOK_RETENTION accepted: Stripe
// redelivers an event for up to three days.
const MinRetention = 72 * time.Hour

// Error names every missing or malformed variable, on one line.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// LoadIngest reads the ingest's configuration from environ (KEY=value pairs).
func LoadIngest(environ []string) (Ingest, error) {
	var c Ingest
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.redis(&c.Redis)
	p.log(c.Log)
	secrets := c.WebhookSecrets[:0]
	for _, s := range c.WebhookSecrets {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	c.WebhookSecrets = secrets
	if len(secrets) == 0 {
		p.add("STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_… signing secret; comma-separate several during a roll)")
	}
	p.livemode(c.Livemode)
	p.ipAllowlist(c.IPAllowlist)
	p.port("PORT", c.HTTPPort)
	p.positive("WEBHOOK_MAX_BODY_BYTES", int(min(c.MaxBodyBytes, 1<<31)))
	p.nonNegative("WEBHOOK_REJECT_RATE_LIMIT", c.RejectRateLimit)
	p.positiveDuration("SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	p.positiveDuration("WEBHOOK_ENQUEUE_TIMEOUT", c.EnqueueTimeout)
	if c.EnqueueTimeout > 5*time.Second {
		p.add(fmt.Sprintf("WEBHOOK_ENQUEUE_TIMEOUT must be at most 5s (every delivery of a batch waits for it), got %s", c.EnqueueTimeout))
	}
	p.positiveDuration("WEBHOOK_BODY_TIMEOUT", c.BodyTimeout)
	return c, p.err()
}

// LoadWorker reads the worker pool's configuration from environ.
func LoadWorker(environ []string) (Worker, error) {
	var c Worker
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.redis(&c.Redis)
	p.log(c.Log)
	p.livemode(c.Livemode)
	p.positive("WEBHOOK_WORKER_CONCURRENCY", c.Concurrency)
	p.positive("WEBHOOK_MAX_RETRIES", c.MaxRetries)
	p.positiveDuration("WEBHOOK_RETRY_BASE_DELAY", c.RetryBaseDelay)
	p.positiveDuration("WEBHOOK_JOB_TIMEOUT", c.JobTimeout)
	p.port("WORKER_HTTP_PORT", c.HTTPPort)
	p.positiveDuration("WEBHOOK_SWEEP_INTERVAL", c.SweepInterval)
	p.positiveDuration("WEBHOOK_SWEEP_AFTER", c.SweepAfter)
	p.stripeAPI(c.StripeAPI, false)
	p.positiveDuration("STRIPE_RECONCILE_INTERVAL", c.ReconcileInterval)
	p.retention(c.Retention)
	p.positiveDuration("STRIPE_RESYNC_DEBOUNCE", c.ResyncDebounce)
	return c, p.err()
}

// LoadWebUI reads the web UI's configuration from environ.
func LoadWebUI(environ []string) (WebUI, error) {
	var c WebUI
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.redis(&c.Redis)
	p.log(c.Log)
	p.livemode(c.Livemode)
	host, _, err := splitHostPort(c.Addr)
	switch {
	case err != nil:
		p.add("WEBUI_ADDR must be host:port, such as 127.0.0.1:5040")
	case (c.LoginUser == "") != (c.LoginPassword == ""):
		p.add("WEBUI_USERNAME and WEBUI_PASSWORD must be set together")
	case c.LoginUser == "" && !IsLoopback(host):
		p.add("WEBUI_ADDR is not a loopback address: set WEBUI_USERNAME and WEBUI_PASSWORD to serve the web UI beyond this machine")
	}
	return c, p.err()
}

// LoadReconcile reads the configuration of `reconcile` and `resync`, which
// need STRIPE_API_KEY.
func LoadReconcile(environ []string) (Reconcile, error) {
	var c Reconcile
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.redis(&c.Redis)
	p.log(c.Log)
	p.livemode(c.Livemode)
	p.stripeAPI(c.StripeAPI, true)
	p.retention(c.Retention)
	return c, p.err()
}

// LoadAdmin reads the configuration of `migrate` and `replay`.
func LoadAdmin(environ []string) (Admin, error) {
	var c Admin
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.log(c.Log)
	p.livemode(c.Livemode)
	return c, p.err()
}

// FileVars may each be given instead as <NAME>_FILE: the path of a file
// (a mounted Kubernetes Secret) that holds the value. Surrounding white
// space is dropped; in the lists (STRIPE_WEBHOOK_SECRET,
// STRIPE_IP_ALLOWLIST) a line break separates like a comma, and in
// STRIPE_IP_ALLOWLIST a '#' starts a comment.
var FileVars = []string{"STRIPE_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_PASSWORD", "WEBUI_PASSWORD",
	"STRIPE_API_KEY", "STRIPE_IP_ALLOWLIST", "REDIS_SENTINEL_PASSWORD"}

// listVars are the FileVars that hold comma-separated lists.
var listVars = map[string]bool{"STRIPE_WEBHOOK_SECRET": true, "STRIPE_IP_ALLOWLIST": true}

// ReadFileVar reads the value of variable name from the file at path, as
// load does for <name>_FILE. Its errors never quote the file's content.
func ReadFileVar(name, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s_FILE: cannot read %s: %v", name, path, err)
	}
	v := strings.TrimSpace(string(b))
	if name == "STRIPE_IP_ALLOWLIST" { // '#' starts a comment (a secret may hold one)
		lines := strings.Split(v, "\n")
		for i, l := range lines {
			lines[i], _, _ = strings.Cut(l, "#")
		}
		v = strings.TrimSpace(strings.Join(lines, "\n"))
		if v == "" {
			// A failed download of Stripe's list must not let every address in.
			return "", fmt.Errorf("%s_FILE: %s lists no address (an empty list would accept deliveries from anywhere; unset %s_FILE to turn the allowlist off)", name, path, name)
		}
	}
	if listVars[name] {
		v = strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }), ",")
	}
	return v, nil
}

// load fills c from environ, turning the library's errors into an *Error that
// names variables rather than Go fields. It never echoes a value. A variable
// of FileVars that c reads may come from <NAME>_FILE instead.
func load(c any, environ []string) error {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var fileProblems problems
	reads := slices.Collect(maps.Values(envNames(reflect.TypeOf(c).Elem())))
	for _, name := range FileVars {
		path, ok := vars[name+"_FILE"]
		if !ok || !slices.Contains(reads, name) {
			continue
		}
		if _, both := vars[name]; both {
			fileProblems.add(fmt.Sprintf("%s and %s_FILE are both set: set one", name, name))
			continue
		}
		v, err := ReadFileVar(name, path)
		if err != nil {
			fileProblems.add(err.Error())
			continue
		}
		vars[name] = v
	}
	if err := fileProblems.err(); err != nil {
		return err
	}
	err := env.ParseWithOptions(c, env.Options{Environment: vars})
	if err == nil {
		return nil
	}
	fields := envNames(reflect.TypeOf(c).Elem())
	var p problems
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		agg.Errors = []error{err}
	}
	for _, e := range agg.Errors {
		var parse env.ParseError
		var notSet env.VarIsNotSetError
		switch {
		case errors.As(e, &notSet):
			p.add(notSet.Key + " is required")
		case errors.As(e, &parse):
			name := fields[parse.Name]
			p.add(fmt.Sprintf("%s is malformed: want %s", name, describe(parse.Type)))
		default:
			p.add(e.Error())
		}
	}
	return p.err()
}

// envNames maps Go field names to their variable names, embedded structs
// included. Field names are unique across a command's struct for this reason.
func envNames(t reflect.Type) map[string]string {
	names := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range envNames(f.Type) {
				names[k] = v
			}
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		names[f.Name] = tag
	}
	return names
}

func describe(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a Go duration such as 30s or 5m"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "a whole number"
	default:
		return t.String()
	}
}

type problems []string

func (p *problems) add(s string) { *p = append(*p, s) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &Error{Problems: p}
}

func (p *problems) positive(name string, v int) {
	if v <= 0 {
		p.add(fmt.Sprintf("%s must be a positive whole number, got %d", name, v))
	}
}

func (p *problems) nonNegative(name string, v int) {
	if v < 0 {
		p.add(fmt.Sprintf("%s must be 0 or more, got %d", name, v))
	}
}

func (p *problems) positiveDuration(name string, d time.Duration) {
	if d <= 0 {
		p.add(fmt.Sprintf("%s must be a positive duration such as 30s, got %s", name, d))
	}
}

func (p *problems) retention(d time.Duration) {
	if d < 0 || (d > 0 && d < MinRetention) {
		p.add("WEBHOOK_RETENTION must be 0 (keep forever) or at least 72h: Stripe redelivers for three days, and a redelivery of a deleted event would be applied again")
	}
}

func (p *problems) port(name string, v int) {
	if v < 0 || v > 65535 {
		p.add(fmt.Sprintf("%s must be a TCP port (0-65535), got %d", name, v))
	}
}

func (p *problems) database(d Database) {
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// The URL may hold a password: never echo it.
		p.add("DATABASE_URL must be a postgres:// URL such as postgres://user@host:5432/db?sslmode=disable")
	}
}

func (p *problems) redis(r *Redis) {
	addrs := r.SentinelAddrs[:0]
	for _, a := range r.SentinelAddrs {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	r.SentinelAddrs = addrs
	switch {
	case r.UsesSentinel():
		for _, a := range addrs {
			if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) {
				p.add(fmt.Sprintf("REDIS_SENTINEL_ADDRS must be host:port addresses, comma-separated, got %q", a))
			}
		}
		if strings.TrimSpace(r.SentinelMaster) == "" {
			p.add("REDIS_SENTINEL_MASTER is required with REDIS_SENTINEL_ADDRS (the name the sentinels monitor, such as mymaster)")
		}
	default:
		if r.SentinelMaster != "" {
			p.add("REDIS_SENTINEL_MASTER is set without REDIS_SENTINEL_ADDRS")
		}
		if r.Host == "" {
			p.add("REDIS_HOST must not be empty")
		}
		if r.Port <= 0 || r.Port > 65535 {
			p.add(fmt.Sprintf("REDIS_PORT must be a TCP port (1-65535), got %d", r.Port))
		}
	}
	p.nonNegative("REDIS_DB", r.DB)
	if r.Namespace == "" || strings.ContainsAny(r.Namespace, " \t\n*?[]") {
		p.add("WORK_NAMESPACE must be a non-empty name without spaces or glob characters")
	}
}

func (p *problems) livemode(l Livemode) {
	switch l.Mode {
	case "live", "test", "any":
	default:
		p.add(fmt.Sprintf("STRIPE_LIVEMODE must be live, test or any, got %q", l.Mode))
	}
}

func (p *problems) stripeAPI(s StripeAPI, keyRequired bool) {
	if keyRequired && s.Key == "" {
		p.add("STRIPE_API_KEY is required (a restricted key with read access to Events and Connect accounts)")
	}
	if s.Key != "" && !strings.HasPrefix(s.Key, "sk_") && !strings.HasPrefix(s.Key, "rk_") {
		// Never echo the key.
		p.add("STRIPE_API_KEY must be a secret or restricted key (sk_… or rk_…)")
	}
	if u, err := url.Parse(s.Base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.add("STRIPE_API_BASE must be an http(s) URL such as https://api.stripe.com")
	}
	if s.Rate <= 0 {
		p.add(fmt.Sprintf("STRIPE_API_RATE must be a positive number of requests per second, got %v", s.Rate))
	}
}

func (p *problems) ipAllowlist(list []string) {
	if _, err := ParseAllowlist(list); err != nil {
		p.add("STRIPE_IP_ALLOWLIST " + err.Error())
	}
}

func (p *problems) log(l Log) {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		p.add(fmt.Sprintf("LOG_LEVEL must be debug, info, warn or error, got %q", l.Level))
	}
}

// IsLoopback reports whether host (a name or an IP) means this machine only.
// An empty host means every interface, so it is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitHostPort(addr string) (string, string, error) {
	u, err := url.Parse("//" + addr)
	if err != nil {
		return "", "", err
	}
	if u.Port() == "" {
		return "", "", errors.New("no port")
	}
	return u.Hostname(), u.Port(), nil
}

// VarNames lists the environment variables a configuration struct (such as
// Ingest{}) reads, embedded structs included, and <NAME>_FILE for those of
// FileVars among them.
func VarNames(c any) []string {
	seen := map[string]bool{}
	for _, name := range envNames(reflect.TypeOf(c)) {
		seen[name] = true
		if slices.Contains(FileVars, name) {
			seen[name+"_FILE"] = true
		}
	}
	names := slices.Collect(maps.Keys(seen))
	sort.Strings(names)
	return names
}

// Allowlist is a parsed STRIPE_IP_ALLOWLIST.
type Allowlist struct {
	// Stripe: Stripe's published webhook addresses are allowed.
	Stripe bool
	// Prefixes are the other addresses allowed (a single IP is a /32 or /128).
	Prefixes []netip.Prefix
}

// On reports whether the allowlist restricts anything.
func (a Allowlist) On() bool { return a.Stripe || len(a.Prefixes) > 0 }

// ParseAllowlist reads STRIPE_IP_ALLOWLIST's elements: "stripe", IPs and
// CIDRs. Empty elements are skipped; none at all is no allowlist.
func ParseAllowlist(list []string) (Allowlist, error) {
	var a Allowlist
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case strings.EqualFold(s, "stripe"):
			a.Stripe = true
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return a, fmt.Errorf("has %q, which is neither stripe, an IP nor a CIDR", s)
			}
			a.Prefixes = append(a.Prefixes, p.Masked())
		default:
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return a, fmt.Errorf("has %q, which is neither stripe, an IP nor a CIDR", s)
			}
			ip = ip.Unmap()
			a.Prefixes = append(a.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return a, nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535
}
