package inspector

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// BenchmarkMiddleware measures what recording costs an exchange with 4 KiB
// each way, against the same handler unrecorded.
func BenchmarkMiddleware(b *testing.B) {
	body := payload(4<<10, 6)
	for _, recorded := range []bool{false, true} {
		name := "direct"
		h := writeInChunks(body, 4<<10)
		if recorded {
			name = "recorded"
			h = New(nil).Middleware(h)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(2 * len(body)))
			for b.Loop() {
				h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", "/bench", bytes.NewReader(body)))
			}
		})
	}
}
