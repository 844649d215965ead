package protocol_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// FuzzUnmarshal checks that Unmarshal never panics, that every error wraps
// exactly one sentinel, and that every message it accepts is canonical:
// Marshal encodes it, the encoding is valid JSON without newlines, decodes
// to an equal value and encodes to the same bytes again.
func FuzzUnmarshal(f *testing.F) {
	for _, g := range goldens() {
		f.Add([]byte(g.json))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"type":1}`, `{"type":"ping"}x`, `{"type":"ping","type":"pong"}`,
		`{"x":1,"type":"future"}`, `{"type":"p\u0069ng"}`,
		`{"type":"http_request","request_id":"r","method":"GET","uri":"/","headers":{"a":[],"B":["\ud800"]},"body":"\xff"}`,
		`{"type":"http_request","request_id":"r","chunk_index":1,"method":"GET","body":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := protocol.Unmarshal(data, len(data)+1)
		if err != nil {
			n := 0
			for _, s := range []error{protocol.ErrTooLarge, protocol.ErrUnknownType, protocol.ErrMalformed} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || m != nil {
				t.Fatalf("Unmarshal(%q) = %#v, %v: want nil and one sentinel", data, m, err)
			}
			return
		}
		out, err := protocol.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%#v) after Unmarshal(%q): %v", m, data, err)
		}
		if !json.Valid(out) || bytes.ContainsRune(out, '\n') {
			t.Fatalf("Marshal(%#v) = %q: not valid one-line JSON", m, out)
		}
		m2, err := protocol.Unmarshal(out, len(out))
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%#v)) = %q: %v", m, out, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q:\n%#v\n!=\n%#v", data, m, m2)
		}
		out2, err := protocol.Marshal(m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable: %q then %q (%v)", out, out2, err)
		}
	})
}

// FuzzDecodeBody checks DecodeBody against the standard library's padded
// and unpadded decoders, and that every body it accepts re-encodes to a
// string it decodes the same way.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{"", "QQ==", "QQ", "QUI=", "QUJD", "+//+", "-__-", "QQ=", "Q", "QUJD\n", "eyJ0ZXN0IjoidmFsdWUifQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := protocol.DecodeBody(s)
		padded, errPadded := base64.StdEncoding.DecodeString(s)
		raw, errRaw := base64.RawStdEncoding.DecodeString(s)
		clean := !strings.ContainsAny(s, "\r\n")
		switch {
		case err != nil:
			if !errors.Is(err, protocol.ErrMalformed) {
				t.Fatalf("DecodeBody(%q) error %v does not wrap ErrMalformed", s, err)
			}
			if clean && (errPadded == nil || errRaw == nil) {
				t.Fatalf("DecodeBody(%q) rejected standard base64: %v", s, err)
			}
			return
		case errPadded == nil:
			if !bytes.Equal(got, padded) {
				t.Fatalf("DecodeBody(%q) = %x, padded decoding gives %x", s, got, padded)
			}
		case errRaw == nil:
			if !bytes.Equal(got, raw) {
				t.Fatalf("DecodeBody(%q) = %x, unpadded decoding gives %x", s, got, raw)
			}
		default:
			t.Fatalf("DecodeBody(%q) accepted what neither standard decoder accepts", s)
		}
		again, err := protocol.DecodeBody(protocol.EncodeBody(got))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoded body %x decodes to %x, %v", got, again, err)
		}
	})
}
