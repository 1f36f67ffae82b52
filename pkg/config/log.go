package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"stripe-webhooks/pkg/telemetry"
)

// Log is the logging setup shared by every command.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `env:"LOG_LEVEL" envDefault:"info"`
}

// Logger returns the JSON logger every command writes to w. A line logged
// with a context inside a span carries its trace_id and span_id.
func (l Log) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(l.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

func (p *problems) log(l Log) {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		p.add(fmt.Sprintf("LOG_LEVEL must be debug, info, warn or error, got %q", l.Level))
	}
}
