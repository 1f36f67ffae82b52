package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gocraft/work/webui"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
)

// runWebUI serves the gocraft/work web UI and, beside it, the console of
// the events and accounts in Postgres. The UI itself has no login and
// exposes no http.Handler, so it listens on a private loopback port and an
// authenticating reverse proxy serves it, at / of WEBUI_ADDR.
func runWebUI(ctx context.Context, args []string, environ []string, stdout io.Writer) error {
	if len(args) > 0 {
		return &config.UsageError{Msg: fmt.Sprintf("worker webui: unexpected arguments %q", args), Usage: usage}
	}
	cfg, err := config.LoadWebUI(environ)
	if err != nil {
		return err
	}
	logger := cfg.Log.Logger(stdout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("worker webui: listen: %w", err)
	}
	inner, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 4, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	pool := queue.NewPool(cfg.Redis, 10)
	defer pool.Close()
	con, err := newConsole(st, pool, cfg.Redis.Namespace, cfg.Livemode, logger)
	if err != nil {
		return err
	}
	ui := webui.NewServer(cfg.Redis.Namespace, pool, inner)
	ui.Start()
	defer ui.Stop()

	target := &url.URL{Scheme: "http", Host: inner}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization")
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv := &http.Server{
		Handler:           webUIHandler(cfg.LoginUser, cfg.LoginPassword, con, proxy),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("web UI listening", "addr", ln.Addr().String(), "login", cfg.LoginUser != "", "namespace", cfg.Redis.Namespace)
	select {
	case err := <-serveErr:
		return fmt.Errorf("worker webui: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("worker webui: shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("web UI stopped")
	return nil
}

// webUIHandler requires HTTP basic auth (when a user is set) and refuses
// cross-site state-changing requests (the UI's retry and delete POSTs), by
// the browser's Sec-Fetch-Site and Origin headers. Behind both, the
// console's routes come first and every other path goes to next, the job
// UI.
//
// GET /healthz answers 200 without a login, for the kubelet's probes; the
// web UI has no route of that name.
func webUIHandler(user, password string, con *console, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	pages := http.NewServeMux()
	con.register(pages)
	pages.Handle("/", next)
	protected := http.NewCrossOriginProtection().Handler(pages)
	if user == "" {
		mux.Handle("/", protected)
		return mux
	}
	wantUser := sha256.Sum256([]byte(user))
	wantPass := sha256.Sum256([]byte(password))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		protected.ServeHTTP(w, r)
	}))
	return mux
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("worker webui: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
