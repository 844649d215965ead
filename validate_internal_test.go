package tunnel

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/http-tunnel/tunnel/internal/yamux"
)

// Whose fault a failed forward was decides its status. (The end-to-end
// cases are in forwarderrors_test.go; the stream cap's, 4,096 requests
// in flight through one agent, is in hostile_test.go, which the race
// detector's goroutine limit scales below the cap.)
func TestForwardErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Code
	}{
		{fmt.Errorf("dial: %w", yamux.ErrStreamLimit), CodeUnavailable},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), CodeGatewayTimeout},
		{io.ErrUnexpectedEOF, CodeAgentUnavailable},
		{yamux.ErrSessionShutdown, CodeAgentUnavailable},
	} {
		got := forwardError(httptest.NewRequest("GET", "/", nil), tc.err)
		if got.Code != tc.want {
			t.Errorf("forwardError(%v) = %s; want %s", tc.err, got.Code, tc.want)
		}
	}
}
