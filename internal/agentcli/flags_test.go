package agentcli

import (
	"cmp"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// envMap returns a getenv that reads m, so that tests never depend on, or
// change, the process environment.
func envMap(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

func TestParseLocal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"3000", "http://localhost:3000"},
		{"1", "http://localhost:1"},
		{"65535", "http://localhost:65535"},
		{":3000", "http://localhost:3000"},
		{"127.0.0.1:3000", "http://127.0.0.1:3000"},
		{"10.0.0.7:8080", "http://10.0.0.7:8080"},
		{"[::1]:3000", "http://[::1]:3000"},
		{"http://localhost:3000", "http://localhost:3000"},
		{"https://app.internal/base?x=1", "https://app.internal/base?x=1"},
		{"h2c://localhost:50051", "h2c://localhost:50051"},
		{"0", ""},
		{"65536", ""},
		{"localhost", ""},
		{"localhost:http", ""},
		{"::1:3000", ""},
		{"ftp://localhost:21", ""},
		{"http://", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := parseLocal(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parseLocal(%q) = %q; want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseLocal(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config // compared when wantErr is ""
		wantErr string
	}{{
		name: "port only",
		args: []string{"3000"},
		want: config{gateway: DefaultGateway, local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name: "environment",
		args: []string{"localhost:5173"},
		env:  map[string]string{EnvGateway: "https://gw.example.com", EnvToken: "env-token"},
		want: config{gateway: "https://gw.example.com", token: "env-token", local: "http://localhost:5173", inspect: DefaultInspect},
	}, {
		name: "the original agent's environment",
		args: []string{"3000"},
		env:  map[string]string{EnvTTFGateway: "wss://abc.execute-api.eu-west-1.amazonaws.com/dev", EnvTTFToken: "ttf-token"},
		want: config{gateway: "wss://abc.execute-api.eu-west-1.amazonaws.com/dev", token: "ttf-token", local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name: "TUNNEL_ variables over TTF_ ones",
		args: []string{"3000"},
		env:  map[string]string{EnvGateway: "https://a.example.com", EnvTTFGateway: "https://b.example.com", EnvToken: "a", EnvTTFToken: "b"},
		want: config{gateway: "https://a.example.com", token: "a", local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name: "flags over environment",
		args: []string{"--gateway", "http://a:8080", "--token", "flag-token", "3000"},
		env:  map[string]string{EnvGateway: "https://gw.example.com", EnvToken: "env-token"},
		want: config{gateway: "http://a:8080", token: "flag-token", local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name: "the original agent's flags",
		args: []string{"--port", "8000", "--host", "127.0.0.1", "--endpoint", "wss://gw.example.com/dev", "-t", "tok", "-v"},
		want: config{gateway: "wss://gw.example.com/dev", token: "tok", verbose: true, local: "http://127.0.0.1:8000", inspect: DefaultInspect},
	}, {
		name: "the original agent's short flags",
		args: []string{"-p", "8000", "-e", "https://gw.example.com", "--inspect", "off"},
		want: config{gateway: "https://gw.example.com", local: "http://localhost:8000", inspect: "off"},
	}, {
		name: "fallback gateways",
		args: []string{"--gateway", "http://a:8080, http://b:8080,,http://c:8080", "3000"},
		want: config{gateway: "http://a:8080", fallbacks: []string{"http://b:8080", "http://c:8080"}, local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name: "flags after the local service",
		args: []string{"--verbose", "https://localhost:8443", "--name", "web", "--rewrite-host", "--local-insecure", "--json", "--print-url"},
		want: config{gateway: DefaultGateway, name: "web", rewriteHost: true, verbose: true, local: "https://localhost:8443", localInsecure: true, json: true, printURL: true, inspect: DefaultInspect},
	}, {
		name: "local CA and a proxy",
		args: []string{"--local-ca", "ca.pem", "--proxy", "socks5://127.0.0.1:1080", "--inspect", ":4041", "https://localhost:8443"},
		want: config{gateway: DefaultGateway, local: "https://localhost:8443", localCA: "ca.pem", proxy: "socks5://127.0.0.1:1080", inspect: ":4041"},
	}, {
		name: "no proxy",
		args: []string{"--proxy", "none", "h2c://localhost:50051"},
		want: config{gateway: DefaultGateway, local: "h2c://localhost:50051", proxy: "none", inspect: DefaultInspect},
	}, {
		name: "a transport",
		args: []string{"--transport", "websocket", "3000"},
		want: config{gateway: DefaultGateway, local: "http://localhost:3000", inspect: DefaultInspect, transport: "websocket"},
	}, {
		name:    "an unknown transport",
		args:    []string{"--transport", "quic", "3000"},
		wantErr: "--transport",
	}, {
		name: "inspector off as a boolean",
		args: []string{"--inspect=false", "3000"},
		want: config{gateway: DefaultGateway, local: "http://localhost:3000", inspect: "off"},
	}, {
		name: "a pool",
		args: []string{"--name", "api", "--pool", "3000"},
		want: config{gateway: DefaultGateway, name: "api", pool: true, local: "http://localhost:3000", inspect: DefaultInspect},
	}, {
		name:    "a pool without a name",
		args:    []string{"--pool", "3000"},
		wantErr: "--pool needs --name",
	}, {
		name:    "no local service",
		args:    []string{"--name", "web"},
		wantErr: "missing the local service",
	}, {
		name:    "two local services",
		args:    []string{"3000", "4000"},
		wantErr: "more than one",
	}, {
		name:    "an argument and --port",
		args:    []string{"--port", "3000", "4000"},
		wantErr: "not both",
	}, {
		name:    "--host without --port",
		args:    []string{"--host", "127.0.0.1", "4000"},
		wantErr: "--host needs --port",
	}, {
		name:    "port out of range",
		args:    []string{"-p", "70000"},
		wantErr: "want 1-65535",
	}, {
		name:    "bad local service",
		args:    []string{"localhost"},
		wantErr: "want a port",
	}, {
		name:    "local CA for an http service",
		args:    []string{"--local-ca", "ca.pem", "3000"},
		wantErr: "for an https local service",
	}, {
		name:    "local CA and insecure",
		args:    []string{"--local-ca", "ca.pem", "--local-insecure", "https://localhost:8443"},
		wantErr: "not both",
	}, {
		name:    "proxy without a host",
		args:    []string{"--proxy", "proxy.internal", "3000"},
		wantErr: "want a proxy URL",
	}, {
		name:    "proxy scheme",
		args:    []string{"--proxy", "ftp://proxy.internal:21", "3000"},
		wantErr: "is not http, https",
	}, {
		name:    "inspector address without a port",
		args:    []string{"--inspect", "localhost", "3000"},
		wantErr: "--inspect",
	}, {
		name:    "token in the gateway URL",
		args:    []string{"--gateway", "https://gw.example.com/?token=url-token", "3000"},
		wantErr: "not in the URL",
	}, {
		name:    "empty gateway list",
		args:    []string{"--gateway", " , ", "3000"},
		wantErr: "names no gateway",
	}, {
		name:    "unknown flag",
		args:    []string{"--bogus", "3000"},
		wantErr: "flag provided but not defined",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			cfg, err := parseFlags("tunnel agent", tt.args, envMap(tt.env), &out)
			if tt.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want a usage error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error()+out.String(), "url-token") {
					t.Errorf("error or usage repeats the token: %v\n%s", err, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v\n%s", err, out.String())
			}
			if cfg.gateway != tt.want.gateway || !slices.Equal(cfg.fallbacks, tt.want.fallbacks) || cfg.token != tt.want.token ||
				cfg.name != tt.want.name || cfg.rewriteHost != tt.want.rewriteHost || cfg.verbose != tt.want.verbose ||
				cfg.local != tt.want.local || cfg.localCA != tt.want.localCA || cfg.localInsecure != tt.want.localInsecure ||
				cfg.proxy != tt.want.proxy || cfg.transport != cmp.Or(tt.want.transport, "auto") || cfg.json != tt.want.json || cfg.printURL != tt.want.printURL || cfg.inspect != tt.want.inspect {
				t.Errorf("got  %+v\nwant %+v", *cfg, tt.want)
			}
		})
	}
}

// TestHelpHidesSecrets checks that -h shows where the token comes from,
// never its value.
func TestHelpHidesSecrets(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{EnvToken: "agent-secret-value", EnvTTFToken: "ttf-secret-value",
		EnvBasicAuth: "alice:basic-secret-value", EnvBearerAuth: "bearer-secret-value"})
	var out strings.Builder
	if _, err := parseFlags("tunnel-agent", []string{"-h"}, env, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v; want flag.ErrHelp", err)
	}
	help := out.String()
	if strings.Contains(help, "secret-value") {
		t.Errorf("help shows a secret:\n%s", help)
	}
	for _, want := range []string{"Usage: tunnel-agent [flags]", "$" + EnvToken, "$" + EnvTTFToken, "$" + EnvTTFGateway, "-gateway URL", "-port port", "-local-ca file", "-proxy URL", "-inspect address",
		"-basic-auth-file file", "$" + EnvBasicAuth, "-bearer-auth-file file", "$" + EnvBearerAuth, "-allow-ip addresses", "-deny-ip addresses"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestExit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err      error
		want     int
		wantText string // "" means nothing printed
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{Usagef("missing the local service"), 2, "tunnel-agent: missing the local service\nRun \"tunnel-agent -h\" for the flags.\n"},
		{&UsageError{Err: errors.New("flag provided but not defined: -x"), Printed: true}, 2, ""},
		{errors.New("tunnel stopped"), 1, "tunnel-agent: tunnel stopped\n"},
	}
	for _, tt := range tests {
		var out strings.Builder
		if got := Exit(&out, "tunnel-agent", tt.err); got != tt.want || out.String() != tt.wantText {
			t.Errorf("Exit(%v) = %d, printed %q; want %d, %q", tt.err, got, out.String(), tt.want, tt.wantText)
		}
	}
}
