package inspector

import (
	"fmt"
	"testing"
	"time"
)

// recordFrames feeds data to a frame parser n bytes at a time and returns
// what it recorded.
func recordFrames(data []byte, n int, fromClient bool) Exchange {
	rec := New(&Options{MaxBodyBytes: 1024})
	rec.now = func() time.Time { return time.Time{} }
	e := &entry{frameBudget: [2]int64{1024, 1024}}
	rec.mu.Lock()
	rec.addLocked(e, 0)
	rec.mu.Unlock()
	var p frameParser
	for len(data) > 0 {
		k := min(n, len(data))
		p.feed(data[:k], rec, e, fromClient)
		data = data[k:]
	}
	ex, _ := rec.Get(e.ex.ID)
	return ex
}

// The frame parser takes any bytes, and records the same frames however
// they are cut.
func FuzzFrameParser(f *testing.F) {
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, uint8(1))
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1, 0x88, 0x02, 0x03, 0xe8}, uint8(3))
	f.Add([]byte{0x02, 0x7e, 0x01, 0x00}, uint8(2))
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1, 0xff}, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		whole := recordFrames(data, len(data)+1, true)
		pieces := recordFrames(data, int(cut%16)+1, true)
		if fmt.Sprint(whole.Frames) != fmt.Sprint(pieces.Frames) || whole.FrameCount != pieces.FrameCount {
			t.Fatalf("whole: %d frames %v\npieces of %d: %d frames %v", whole.FrameCount, whole.Frames, cut%16+1, pieces.FrameCount, pieces.Frames)
		}
		for _, fr := range whole.Frames {
			if int64(len(fr.Payload)) > fr.Length || fr.Length < 0 {
				t.Fatalf("frame with %d bytes kept of %d", len(fr.Payload), fr.Length)
			}
		}
	})
}

func TestFrameUnmasking(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	msg := []byte("Hello, masked world")
	frame := []byte{0x81, 0x80 | byte(len(msg)), key[0], key[1], key[2], key[3]}
	for i, c := range msg {
		frame = append(frame, c^key[i%4])
	}
	for n := 1; n <= len(frame); n++ {
		ex := recordFrames(frame, n, true)
		if len(ex.Frames) != 1 || string(ex.Frames[0].Payload) != string(msg) || !ex.Frames[0].FromClient || ex.Frames[0].Opcode != 1 {
			t.Fatalf("fed %d bytes at a time: %+v", n, ex.Frames)
		}
	}
}

// The SSE parser takes any bytes, and records the same events however
// they are cut.
func FuzzSSEParser(f *testing.F) {
	f.Add("event: a\nid: 1\ndata: x\n\n", uint8(1))
	f.Add("data: a\r\n\r\ndata: b\r\rdata\n\n", uint8(2))
	f.Add(": comment\nretry: 10\nid: \x00\ndata:  y\n\n", uint8(3))
	f.Fuzz(func(t *testing.T, stream string, cut uint8) {
		whole, wn := parseEvents(t, stream, 0, 256)
		pieces, pn := parseEvents(t, stream, int(cut%16)+1, 256)
		if fmt.Sprint(whole) != fmt.Sprint(pieces) || wn != pn {
			t.Fatalf("whole: %d %v\npieces of %d: %d %v", wn, whole, cut%16+1, pn, pieces)
		}
	})
}
