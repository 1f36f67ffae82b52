// Package webui is the web UI's front door, `worker webui` on WEBUI_ADDR:
// the login, the refusal of cross-site changes, a health route for probes,
// and behind them the console's pages (package console) and the
// gocraft/work job UI: queues, busy workers, retrying and dead jobs, and
// buttons to retry or delete dead ones. The job UI has no login of its own
// and exposes no http.Handler, so JobUI serves it on a private loopback
// port and proxies to it at /.
//
//   - Login: HTTP basic auth with WEBUI_USERNAME and WEBUI_PASSWORD,
//     compared in constant time; without them the configuration refuses
//     any WEBUI_ADDR but a loopback one (exit 2). The login header is
//     removed before a request reaches the job UI.
//   - Cross-site state-changing requests (the job UI's retry and delete
//     POSTs, the console's replays, sent from another site's page) get 403,
//     judged by the browser's Sec-Fetch-Site and Origin headers
//     (net/http.CrossOriginProtection).
//   - GET /healthz answers 200 without a login, for the kubelet's probes.
//   - The job UI's JSON API works through the proxy for scripts: GET
//     /queues, /retry_jobs, /dead_jobs, POST
//     /retry_dead_job/<died_at>/<job_id>, /retry_all_dead_jobs, …, such as
//     curl -u ops:… -X POST http://127.0.0.1:5040/retry_all_dead_jobs.
package webui

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/gocraft/work/webui"
	"github.com/gomodule/redigo/redis"
)

// Options are what Handler serves.
type Options struct {
	// User and Password are the HTTP basic auth login; no User, no login
	// (loopback only, which the configuration checks).
	User, Password string
	// Pages are the routes served before the job UI (the console's).
	Pages func(*http.ServeMux)
	// Jobs serves every other path: the job UI.
	Jobs http.Handler
}

// Handler requires HTTP basic auth (when a user is set) and refuses
// cross-site state-changing requests (the job UI's retry and delete
// POSTs, the console's replays), by the browser's Sec-Fetch-Site and
// Origin headers. Behind both, o.Pages come first and every other path
// goes to o.Jobs.
//
// GET /healthz answers 200 without a login, for the kubelet's probes; the
// job UI has no route of that name.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	})
	pages := http.NewServeMux()
	if o.Pages != nil {
		o.Pages(pages)
	}
	pages.Handle("/", o.Jobs)
	protected := http.NewCrossOriginProtection().Handler(pages)
	if o.User == "" {
		mux.Handle("/", protected)
		return mux
	}
	mux.Handle("/", basicAuth(o.User, o.Password, protected))
	return mux
}

// basicAuth lets through the requests that carry the login (compared in
// constant time) and answers 401 to the others.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPass := sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPass := sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="stripe-webhooks jobs", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// User is who signed in to r ("" without a login).
func User(r *http.Request) string {
	u, _, _ := r.BasicAuth()
	return u
}

// JobUI starts the gocraft/work web UI of namespace on a free loopback
// port and returns a proxy to it (the login header removed on the way),
// and the func that stops it.
func JobUI(namespace string, pool *redis.Pool, logger *slog.Logger) (http.Handler, func(), error) {
	inner, err := freeLoopbackAddr()
	if err != nil {
		return nil, nil, err
	}
	ui := webui.NewServer(namespace, pool, inner)
	ui.Start()
	target := &url.URL{Scheme: "http", Host: inner}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization")
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return proxy, ui.Stop, nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("webui: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
