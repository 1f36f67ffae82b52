package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/console"
	"stripe-webhooks/worker/internal/access"
	"stripe-webhooks/worker/replay"
	"stripe-webhooks/worker/webui"
)

// runWebUI serves the gocraft/work web UI and, beside it, the console of
// the events and accounts in Postgres, behind the login (WEBUI_AUTH) on
// WEBUI_ADDR, recording every change in the audit trail.
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
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 4, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	pool := queue.NewPool(cfg.Redis, 10)
	defer pool.Close()
	handler, stopUI, err := webUIHandler(cfg, st, pool, logger)
	if err != nil {
		return err
	}
	defer stopUI()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("web UI listening", "addr", ln.Addr().String(), "auth", cfg.Auth, "namespace", cfg.Redis.Namespace)
	if cfg.Auth == config.WebUIAuthProxy && (cfg.LoginUser != "" || cfg.LoginPassword != "") {
		logger.Warn("WEBUI_USERNAME and WEBUI_PASSWORD are not used with WEBUI_AUTH=proxy")
	}
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

// webUIHandler is the web UI: the login, the roles and the audit trail in
// front of the console and the job UI (started here; stop stops it).
func webUIHandler(cfg config.WebUI, st *store.Store, pool *redis.Pool, logger *slog.Logger) (http.Handler, func(), error) {
	auth, err := access.New(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	con, err := console.New(console.Options{Store: st, Redis: pool, Namespace: cfg.Redis.Namespace, Logger: logger,
		Replay: consoleReplay(replay.New(st, cfg.Livemode))})
	if err != nil {
		return nil, nil, err
	}
	jobUI, stop, err := webui.JobUI(cfg.Redis.Namespace, pool, logger)
	if err != nil {
		return nil, nil, err
	}
	return webui.Handler(webui.Options{Access: auth, Trail: access.NewTrail(st, logger), Logger: logger,
		Pages: con.Register, Jobs: jobUI}), stop, nil
}

// consoleReplay is the console's replay: r's, each within 20 s.
func consoleReplay(r *replay.Replayer) console.ReplayFunc {
	r.Timeout = 20 * time.Second
	return func(ctx context.Context, stripeEventID string) (console.ReplayResult, error) {
		res := r.Event(ctx, stripeEventID)
		switch res.Outcome {
		case replay.Applied:
			return console.ReplayApplied, nil
		case replay.Failed:
			return console.ReplayFailed, res.Err
		case replay.OtherMode:
			return console.ReplayOtherMode, nil
		case replay.NotFound:
			return console.ReplayNotFound, nil
		}
		return "", res.Err
	}
}
