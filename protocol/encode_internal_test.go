package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzAppendString checks the hand-written string encoder against
// encoding/json: its output must be valid JSON that decodes to what
// encoding/json's own encoding of the same string decodes to.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\/", "\x00\x1f\x7f", "\n\r\t\b\f", "é😀", "\xff", "a\xc3", "\xed\xa0\x80", "\u2028<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours := appendString(nil, s)
		var got string
		if err := json.Unmarshal(ours, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, ours, err)
		}
		theirs, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		if err := json.Unmarshal(theirs, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json's to %q", s, got, want)
		}
	})
}

// TestMarshalAllocations pins Marshal to one allocation, the output: a
// regrowth would copy a message of up to 128 KiB.
func TestMarshalAllocations(t *testing.T) {
	req := &HTTPRequest{
		RequestID: "req_1", Method: "POST", URI: "/hook", Body: "QUJD", Timestamp: 1700000000000,
		Headers:    map[string][]string{"a": {"1"}, "b": {"2", "3"}},
		ChunkCount: 2, BodySize: 4,
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Marshal(req); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("Marshal(http_request) allocates %v times, want 1", n)
	}
}
