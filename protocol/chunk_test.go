package protocol_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

func testRequest() *protocol.HTTPRequest {
	return &protocol.HTTPRequest{
		RequestID: "req-1",
		Method:    "POST",
		URI:       "/upload?a=1&a=2",
		Headers:   map[string][]string{"content-type": {"application/octet-stream"}, "x-long": {string(bytes.Repeat([]byte("h"), 2000))}},
		Timestamp: 1700000000000,
	}
}

func randomBody(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestSplitRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		size       int
		maxMessage int
		wantCount  int // 1: unchunked; 0: at least 2
	}{
		{"empty", 0, 0, 1},
		{"small", 100, 0, 1},
		{"just under the cap", 90 << 10, 0, 1},
		{"just over the cap", 97 << 10, 0, 0},
		{"1.5 MiB", 3 << 19, 0, 0},
		{"2 MiB", 2 << 20, 0, 0},
		{"tiny cap", 10000, 2600, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := randomBody(tt.size, uint64(tt.size))
			limit := tt.maxMessage
			if limit == 0 {
				limit = protocol.MaxMessageBytes
			}
			for _, kind := range []string{"request", "response"} {
				var msgs []protocol.Message
				var err error
				if kind == "request" {
					msgs, err = protocol.SplitRequest(testRequest(), body, tt.maxMessage)
				} else {
					msgs, err = protocol.SplitResponse(&protocol.HTTPResponse{RequestID: "r", StatusCode: 200, Headers: map[string][]string{"set-cookie": {"a=1", "b=2"}}, ProcessingTimeMillis: 5}, body, tt.maxMessage)
				}
				if err != nil {
					t.Fatalf("%s: split: %v", kind, err)
				}
				if tt.wantCount == 1 && len(msgs) != 1 || tt.wantCount == 0 && len(msgs) < 2 {
					t.Fatalf("%s: %d messages, want %d (0: several)", kind, len(msgs), tt.wantCount)
				}
				checkWire(t, msgs, limit, len(body))
				// Reassemble in reverse order: arrival order must not matter.
				r := protocol.NewReassembler(4<<20, 4)
				var got []byte
				var first protocol.Message
				for i := len(msgs) - 1; i >= 0; i-- {
					b, _ := protocol.Marshal(msgs[i])
					m, err := protocol.Unmarshal(b, limit)
					if err != nil {
						t.Fatalf("%s: unmarshal chunk %d: %v", kind, i, err)
					}
					done, body, err := r.Add(m)
					if err != nil {
						t.Fatalf("%s: add chunk %d: %v", kind, i, err)
					}
					if done != nil {
						if i != 0 {
							t.Fatalf("%s: complete after chunk %d of %d", kind, i, len(msgs))
						}
						first, got = done, body
					}
				}
				if first == nil || !bytes.Equal(got, body) {
					t.Fatalf("%s: reassembled %d bytes, want the %d sent", kind, len(got), len(body))
				}
				switch m := first.(type) {
				case *protocol.HTTPRequest:
					if m.Method != "POST" || m.URI != "/upload?a=1&a=2" || m.Timestamp != 1700000000000 || m.ChunkCount != 0 || m.Body != "" {
						t.Errorf("reassembled request fields: %+v", m)
					}
				case *protocol.HTTPResponse:
					if m.StatusCode != 200 || len(m.Headers["set-cookie"]) != 2 || m.ChunkCount != 0 {
						t.Errorf("reassembled response fields: %+v", m)
					}
				}
				if r.Pending() != 0 {
					t.Errorf("%d bodies still pending", r.Pending())
				}
			}
		})
	}
}

// checkWire checks the wire form of split messages against spec.md.
func checkWire(t *testing.T, msgs []protocol.Message, limit, size int) {
	t.Helper()
	for i, m := range msgs {
		b, err := protocol.Marshal(m)
		if err != nil {
			t.Fatalf("marshal chunk %d: %v", i, err)
		}
		if len(b) > limit {
			t.Fatalf("chunk %d is %d bytes, cap %d", i, len(b), limit)
		}
		var index, count int
		var bodySize int64
		var piece string
		var fields bool
		switch m := m.(type) {
		case *protocol.HTTPRequest:
			index, count, bodySize, piece = m.ChunkIndex, m.ChunkCount, m.BodySize, m.Body
			fields = m.Method != "" || m.URI != "" || m.Headers != nil || m.Timestamp != 0
		case *protocol.HTTPResponse:
			index, count, bodySize, piece = m.ChunkIndex, m.ChunkCount, m.BodySize, m.Body
			fields = m.StatusCode != 0 || m.Headers != nil || m.ProcessingTimeMillis != 0
		}
		if len(msgs) == 1 {
			if index != 0 || count != 0 || bodySize != 0 {
				t.Errorf("unchunked message has chunk fields %d/%d/%d", index, count, bodySize)
			}
			continue
		}
		if index != i || count != len(msgs) {
			t.Errorf("chunk %d: index %d count %d, want %d %d", i, index, count, i, len(msgs))
		}
		if piece == "" {
			t.Errorf("chunk %d is empty", i)
		}
		if i == 0 && (bodySize != int64(size) || !fields) {
			t.Errorf("chunk 0: body_size %d (want %d), fields present %v", bodySize, size, fields)
		}
		if i > 0 && (bodySize != 0 || fields) {
			t.Errorf("continuation %d carries more than its piece", i)
		}
	}
}

func TestSplitTooLarge(t *testing.T) {
	t.Parallel()
	req := testRequest()
	// The 2000-byte header alone exceeds a 1000-byte cap.
	if _, err := protocol.SplitRequest(req, []byte("x"), 1000); !errors.Is(err, protocol.ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
	if _, err := protocol.SplitRequest(&protocol.HTTPRequest{Method: "GET", URI: "/"}, nil, 0); !errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("no request_id: err = %v, want ErrMalformed", err)
	}
}

func chunk(index, count int, size int64, body string) *protocol.HTTPRequest {
	m := &protocol.HTTPRequest{RequestID: "r", ChunkIndex: index, ChunkCount: count, Body: protocol.EncodeBody([]byte(body))}
	if index == 0 {
		m.Method, m.URI, m.BodySize = "POST", "/", size
	}
	return m
}

func TestReassemblerRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []protocol.Message // all but the last must be accepted
		want error
	}{
		{"index not below count", []protocol.Message{chunk(2, 2, 0, "a")}, protocol.ErrMalformed},
		{"index on unchunked", []protocol.Message{chunk(1, 1, 0, "a")}, protocol.ErrMalformed},
		{"duplicate", []protocol.Message{chunk(1, 3, 0, "a"), chunk(1, 3, 0, "a")}, protocol.ErrMalformed},
		{"count changes", []protocol.Message{chunk(1, 3, 0, "a"), chunk(2, 4, 0, "a")}, protocol.ErrMalformed},
		{"count over body_size", []protocol.Message{chunk(0, 3, 2, "a")}, protocol.ErrMalformed},
		{"empty piece", []protocol.Message{chunk(1, 2, 0, "")}, protocol.ErrMalformed},
		{"pieces short of body_size", []protocol.Message{chunk(0, 2, 5, "a"), chunk(1, 2, 0, "b")}, protocol.ErrMalformed},
		{"pieces over body_size", []protocol.Message{chunk(1, 2, 0, "bbbb"), chunk(0, 2, 3, "a")}, protocol.ErrMalformed},
		{"bad base64", []protocol.Message{&protocol.HTTPRequest{RequestID: "r", ChunkIndex: 1, ChunkCount: 2, Body: "!!"}}, protocol.ErrMalformed},
		{"not a body message", []protocol.Message{&protocol.Ping{}}, protocol.ErrMalformed},
		{"body_size over limit", []protocol.Message{chunk(0, 2, 11, "a")}, protocol.ErrBodyTooLarge},
		{"count over limit", []protocol.Message{chunk(1, 11, 0, "a")}, protocol.ErrBodyTooLarge},
		{"received over limit", []protocol.Message{chunk(1, 3, 0, "aaaaaa"), chunk(2, 3, 0, "bbbbbb")}, protocol.ErrBodyTooLarge},
		{"unchunked over limit", []protocol.Message{chunk(0, 0, 0, "01234567890")}, protocol.ErrBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := protocol.NewReassembler(10, 4)
			for i, m := range tt.msgs {
				done, _, err := r.Add(m)
				if i < len(tt.msgs)-1 {
					if err != nil || done != nil {
						t.Fatalf("message %d: %v, %v; want accepted and incomplete", i, done, err)
					}
					continue
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			}
			if r.Pending() != 0 {
				t.Errorf("%d bodies pending after the error, want 0", r.Pending())
			}
		})
	}
}

func TestReassemblerBoundsPending(t *testing.T) {
	t.Parallel()
	r := protocol.NewReassembler(1<<20, 2)
	for _, id := range []string{"a", "b", "c"} {
		m := chunk(1, 2, 0, "x")
		m.RequestID = id
		if _, _, err := r.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	if r.Pending() != 2 {
		t.Fatalf("pending = %d, want 2", r.Pending())
	}
	// "a", the oldest, was dropped: its first chunk starts it over.
	m := chunk(0, 2, 2, "y")
	m.RequestID = "a"
	if done, _, err := r.Add(m); err != nil || done != nil {
		t.Fatalf("a restarted: %v %v, want incomplete", done, err)
	}
	// "c" is still there and completes.
	m = chunk(0, 2, 2, "y")
	m.RequestID = "c"
	done, body, err := r.Add(m)
	if err != nil || done == nil || string(body) != "yx" {
		t.Fatalf("c: %v %q %v, want complete \"yx\"", done, body, err)
	}
}

// FuzzReassembler feeds arbitrary bodies, caps and arrival orders through
// Split and Add, and arbitrary chunk headers to Add, which must never panic
// and must return exactly the body that was split.
func FuzzReassembler(f *testing.F) {
	f.Add([]byte("hello"), uint16(2200), uint64(1), 0, 0, int64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 5000), uint16(2300), uint64(7), 3, 2, int64(9))
	f.Fuzz(func(t *testing.T, body []byte, capacity uint16, seed uint64, index, count int, size int64) {
		limit := 2100 + int(capacity)%8000
		req := &protocol.HTTPRequest{RequestID: "f", Method: "PUT", URI: "/x", Headers: map[string][]string{"a": {"b"}}}
		msgs, err := protocol.SplitRequest(req, body, limit)
		if err != nil {
			t.Fatalf("split %d bytes at %d: %v", len(body), limit, err)
		}
		r := protocol.NewReassembler(int64(len(body))+1, 2)
		// A stray chunk of another request must not disturb the body.
		stray := &protocol.HTTPRequest{RequestID: "g", ChunkIndex: index, ChunkCount: count, BodySize: size, Body: protocol.EncodeBody(body[:min(len(body), 3)])}
		if index == 0 {
			stray.Method, stray.URI = "GET", "/"
		}
		r.Add(stray)
		rng := rand.New(rand.NewPCG(seed, 2))
		rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
		var got []byte
		completed := 0
		for _, m := range msgs {
			b, err := protocol.Marshal(m)
			if err != nil || len(b) > limit {
				t.Fatalf("chunk of %d bytes (cap %d): %v", len(b), limit, err)
			}
			done, data, err := r.Add(m)
			if err != nil {
				t.Fatalf("add: %v", err)
			}
			if done != nil {
				completed++
				got = data
			}
		}
		if completed != 1 || !bytes.Equal(got, body) {
			t.Fatalf("completed %d times with %d bytes, want once with %d", completed, len(got), len(body))
		}
	})
}
