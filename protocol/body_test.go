package protocol_test

import (
	"bytes"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

func TestEncodeBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"", ""},
		{"A", "QQ=="},
		{"AB", "QUI="},
		{"ABC", "QUJD"},
		{`{"test":"value"}`, "eyJ0ZXN0IjoidmFsdWUifQ=="},
		{"\xfb\xff\xfe", "+//+"},
	}
	for _, tt := range tests {
		if got := protocol.EncodeBody([]byte(tt.in)); got != tt.want {
			t.Errorf("EncodeBody(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{"empty", "", "", false},
		{"padded one", "QQ==", "A", false},
		{"unpadded one", "QQ", "A", false},
		{"padded two", "QUI=", "AB", false},
		{"unpadded two", "QUI", "AB", false},
		{"no padding needed", "QUJD", "ABC", false},
		{"standard alphabet", "+//+", "\xfb\xff\xfe", false},
		{"url alphabet", "-__-", "", true},
		{"partial padding", "QQ=", "", true},
		{"padding in the middle", "QQ==QUJD", "", true},
		{"impossible length", "Q", "", true},
		{"line break", "QUJD\nQUJD", "", true},
		{"carriage return", "QUJD\r", "", true},
		{"space", "QU JD", "", true},
		{"not base64", "héllo", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := protocol.DecodeBody(tt.in)
			if tt.wantErr {
				assertIs(t, err, protocol.ErrMalformed)
				return
			}
			if err != nil {
				t.Fatalf("DecodeBody(%q): %v", tt.in, err)
			}
			if got == nil || !bytes.Equal(got, []byte(tt.want)) {
				t.Errorf("DecodeBody(%q) = %#v, want %q", tt.in, got, tt.want)
			}
		})
	}
}
