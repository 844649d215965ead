package tunnel_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
)

// Every way a Token is commonly printed, logged or encoded shows no secret.
func TestTokenRedaction(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-agent-token"
	tok := tunnel.Token(secret)
	type config struct {
		Gateway string
		Token   tunnel.Token
	}
	cfg := config{Gateway: "wss://gw.example.com", Token: tok}
	slogLine := func(h func(*bytes.Buffer) slog.Handler) string {
		var b bytes.Buffer
		slog.New(h(&b)).Info("connecting", "token", tok, "config", cfg)
		return b.String()
	}
	mustJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mustXML := func(v any) string {
		b, err := xml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		how, got, want string
	}{
		{"String", tok.String(), "[REDACTED]"},
		{"%v", fmt.Sprintf("%v", tok), "[REDACTED]"},
		//lint:ignore S1025 the case is what %s makes of a Token
		{"%s", fmt.Sprintf("%s", tok), "[REDACTED]"},
		{"%q", fmt.Sprintf("%q", tok), `"[REDACTED]"`},
		{"%+v of a struct", fmt.Sprintf("%+v", cfg), "Token:[REDACTED]"},
		{"GoString, %#v", fmt.Sprintf("%#v", tok), `tunnel.Token("[REDACTED]")`},
		{"%#v of a struct", fmt.Sprintf("%#v", cfg), `tunnel.Token("[REDACTED]")`},
		{"slog text", slogLine(func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }), "token=[REDACTED]"},
		{"slog JSON", slogLine(func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }), `"token":"[REDACTED]"`},
		{"json.Marshal", mustJSON(tok), `"[REDACTED]"`},
		{"json.Marshal of a struct", mustJSON(cfg), `"Token":"[REDACTED]"`},
		{"xml.Marshal of a struct", mustXML(cfg), "<Token>[REDACTED]</Token>"},
	}
	for _, tt := range tests {
		if strings.Contains(tt.got, secret) {
			t.Errorf("%s shows the secret: %s", tt.how, tt.got)
		}
		if !strings.Contains(tt.got, tt.want) {
			t.Errorf("%s = %s, want it to contain %s", tt.how, tt.got, tt.want)
		}
	}

	// An empty token prints as empty, and text still decodes into a Token.
	if s := tunnel.Token("").String(); s != "" {
		t.Errorf(`Token("").String() = %q, want ""`, s)
	}
	var back config
	if err := json.Unmarshal([]byte(`{"Token":"from-a-file"}`), &back); err != nil || string(back.Token) != "from-a-file" {
		t.Errorf("decoding a Token: %q, %v", back.Token, err)
	}
}
