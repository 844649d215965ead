package protocol_test

import (
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// Every code of spec.md's table, and the four of version 0.
var (
	currentCodes = []string{
		"tunnel_not_found", "unauthorized", "forbidden", "rate_limited", "payload_too_large",
		"headers_too_large", "uri_too_long", "invalid_request", "gateway_timeout", "agent_unavailable",
		"local_service_unavailable", "name_in_use", "internal", "unavailable",
	}
	version0Codes = map[string]bool{"invalid_request": true, "timeout": true, "local_service_unavailable": true, "internal_error": true}
)

func TestVersion0CodesPinned(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		protocol.CodeV0InvalidRequest:          "invalid_request",
		protocol.CodeV0Timeout:                 "timeout",
		protocol.CodeV0LocalServiceUnavailable: "local_service_unavailable",
		protocol.CodeV0InternalError:           "internal_error",
	} {
		if got != want {
			t.Errorf("version 0 code %q, want %q", got, want)
		}
	}
}

// TestCodeForVersion0 maps every code both ways: a version 0 peer is sent
// one of its four codes, never anything else, and the codes that have a
// counterpart keep their meaning.
func TestCodeForVersion0(t *testing.T) {
	t.Parallel()
	toAgent := map[string]string{
		"gateway_timeout":           "timeout",
		"internal":                  "internal_error",
		"invalid_request":           "invalid_request",
		"local_service_unavailable": "local_service_unavailable",
		"name_in_use":               "invalid_request",
		"unauthorized":              "invalid_request",
		"forbidden":                 "invalid_request",
		"rate_limited":              "invalid_request",
		"unavailable":               "invalid_request",
		"payload_too_large":         "invalid_request",
		"a_future_code":             "invalid_request",
		"timeout":                   "timeout",
		"internal_error":            "internal_error",
	}
	toGateway := map[string]string{
		"gateway_timeout":           "timeout",
		"unavailable":               "local_service_unavailable",
		"invalid_request":           "invalid_request",
		"local_service_unavailable": "local_service_unavailable",
		"payload_too_large":         "internal_error",
		"internal":                  "internal_error",
		"agent_unavailable":         "internal_error",
		"a_future_code":             "internal_error",
		"timeout":                   "timeout",
		"internal_error":            "internal_error",
	}
	for _, code := range append(currentCodes, "a_future_code", "timeout", "internal_error", "") {
		a, g := protocol.CodeForVersion0Agent(code), protocol.CodeForVersion0Gateway(code)
		if !version0Codes[a] || !version0Codes[g] {
			t.Errorf("%q maps to %q for an agent and %q for a gateway; version 0 decodes only %v", code, a, g, version0Codes)
		}
		if want, ok := toAgent[code]; ok && a != want {
			t.Errorf("CodeForVersion0Agent(%q) = %q, want %q", code, a, want)
		}
		if want, ok := toGateway[code]; ok && g != want {
			t.Errorf("CodeForVersion0Gateway(%q) = %q, want %q", code, g, want)
		}
	}
}

func TestCodeFromVersion0(t *testing.T) {
	t.Parallel()
	want := map[string]string{"timeout": "gateway_timeout", "internal_error": "internal"}
	for _, code := range append(currentCodes, "timeout", "internal_error", "a_future_code") {
		w, ok := want[code]
		if !ok {
			w = code
		}
		if got := protocol.CodeFromVersion0(code); got != w {
			t.Errorf("CodeFromVersion0(%q) = %q, want %q", code, got, w)
		}
	}
}
