package pop3

import (
	"context"
	"log/slog"
	"testing"
)

// panicLogger fails the test on any error-level log (the server logs
// recovered panics at error level).
func panicLogger(t testing.TB) *slog.Logger {
	return slog.New(failHandler{t})
}

type failHandler struct{ t testing.TB }

func (h failHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h failHandler) Handle(_ context.Context, r slog.Record) error {
	h.t.Errorf("error logged: %s", r.Message)
	return nil
}
func (h failHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h failHandler) WithGroup(string) slog.Handler      { return h }
