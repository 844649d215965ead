package protocol

import "testing"

func TestPeekType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		want     string
		wantRest int
		wantOK   bool
	}{
		{`{"type":"ping"}`, "ping", 14, true},
		{" {\n\"type\" :\t\"http_request\",", "http_request", 26, true},
		{`{"type":"future"}`, "", 0, false},
		{`{"type":"p\u0069ng"}`, "", 0, false},
		{`{"type":"ping`, "", 0, false},
		{`{"typ":"ping"}`, "", 0, false},
		{`{"Type":"ping"}`, "", 0, false},
		{`{"x":1,"type":"ping"}`, "", 0, false},
		{`{"type":1}`, "", 0, false},
		{`["type","ping"]`, "", 0, false},
		{``, "", 0, false},
		{`{`, "", 0, false},
		{`{"type"`, "", 0, false},
		{`{"type":`, "", 0, false},
	}
	for _, tt := range tests {
		got, rest, ok := peekType([]byte(tt.in))
		if got != tt.want || rest != tt.wantRest || ok != tt.wantOK {
			t.Errorf("peekType(%q) = %q, %d, %v; want %q, %d, %v", tt.in, got, rest, ok, tt.want, tt.wantRest, tt.wantOK)
		}
	}
}

func TestIsBare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{`}`, true},
		{" } \n", true},
		{``, false},
		{` `, false},
		{`,"x":1}`, false},
		{`}}`, false},
		{`} x`, false},
	}
	for _, tt := range tests {
		if got := isBare([]byte(tt.in)); got != tt.want {
			t.Errorf("isBare(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestUnmarshalAllocations pins the allocation-free path for the bare
// messages that make up most of an idle connection's traffic.
func TestUnmarshalAllocations(t *testing.T) {
	ping := []byte(`{"type":"ping"}`)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Unmarshal(ping, 0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Unmarshal(ping) allocates %v times, want 0", n)
	}
}
