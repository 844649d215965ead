package serverless

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestHandlerDefaultLogger checks that a Handler without a Logger passes
// warnings and errors to slog.Default, with their attributes, and nothing
// below. It replaces the default logger, so it does not run in parallel.
func TestHandlerDefaultLogger(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	log := (&Handler{}).log().With(slog.String("connection_id", "c1")).WithGroup("g")
	log.Info("tunnel connected")
	log.Debug("detail")
	if buf.Len() != 0 {
		t.Fatalf("INFO and DEBUG reached the default logger: %s", buf.String())
	}
	log.Warn("post failed", slog.String("k", "v"))
	got := buf.String()
	for _, want := range []string{"level=WARN", "post failed", "connection_id=c1", "g.k=v"} {
		if !strings.Contains(got, want) {
			t.Errorf("warning logged as %q, without %q", got, want)
		}
	}

	buf.Reset()
	own := slog.New(slog.NewTextHandler(&buf, nil))
	(&Handler{Logger: own}).log().Info("tunnel connected")
	if !strings.Contains(buf.String(), "tunnel connected") {
		t.Errorf("a Handler's own Logger did not get INFO: %q", buf.String())
	}
}
