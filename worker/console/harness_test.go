package console

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/access"
	"stripe-webhooks/worker/internal/testkit"
	"stripe-webhooks/worker/replay"
	"stripe-webhooks/worker/webui"
)

// testUI is a console served as the web UI serves it, and its log.
type testUI struct {
	base string
	logs *testenv.Buffer
}

// startConsole serves a Console on a new backend behind the web UI's front
// door (login ops:s3cret, cross-origin protection).
func startConsole(t *testing.T) (*testkit.Backend, *testUI) {
	t.Helper()
	b := testkit.NewBackend(t)
	return b, startConsoleIn(t, b, config.Livemode{Mode: "any"})
}

// startConsoleIn serves a Console on b, replaying as the worker's replay
// package does for a deployment that applies the events of mode, behind
// the web UI's front door (login ops:s3cret), with the job UI behind it.
func startConsoleIn(t *testing.T, b *testkit.Backend, mode config.Livemode) *testUI {
	t.Helper()
	return startConsoleWith(t, b, mode, config.WebUI{LoginUser: "ops", LoginPassword: "s3cret",
		WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthBasic}})
}

// startConsoleWith serves a Console on b behind the web UI's front door
// configured as cfg says, with the job UI behind it.
func startConsoleWith(t *testing.T, b *testkit.Backend, mode config.Livemode, cfg config.WebUI) *testUI {
	t.Helper()
	ui := &testUI{logs: &testenv.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(ui.logs, nil))
	r := replay.New(b.Store, mode)
	c, err := New(Options{Store: b.Store, Redis: b.Pool(t), Namespace: b.Namespace, Logger: logger,
		Replay: func(ctx context.Context, id string) (ReplayResult, error) { return replayResult(r.Event(ctx, id)) }})
	if err != nil {
		t.Fatal(err)
	}
	jobUI, stop, err := webui.JobUI(b.Namespace, b.Pool(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	auth, err := access.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(webui.Handler(webui.Options{Access: auth, Trail: access.NewTrail(b.Store, logger), Logger: logger,
		Pages: c.Register, Jobs: jobUI}))
	t.Cleanup(srv.Close)
	ui.base = srv.URL
	return ui
}

// replayResult is res as the console reports it (the worker's wiring does
// the same).
func replayResult(res replay.Result) (ReplayResult, error) {
	switch res.Outcome {
	case replay.Applied:
		return ReplayApplied, nil
	case replay.Failed:
		return ReplayFailed, res.Err
	case replay.OtherMode:
		return ReplayOtherMode, nil
	case replay.NotFound:
		return ReplayNotFound, nil
	}
	return "", res.Err
}
