package protocol

// The error codes of protocol version 0, the original protocol. Its agent
// and its gateway decode an [Error] message only when its code is one of
// these four: any other code makes the whole message undecodable to them.
// The original gateway, which answers a public client from the agent's
// error, then never completes the request, and the client waits for the
// 504 of its deadline. Codes of later versions are in spec.md (Error
// codes); the root package names them (tunnel.Code).
const (
	CodeV0InvalidRequest          = "invalid_request"           // the original gateway answers 400
	CodeV0Timeout                 = "timeout"                   // 504
	CodeV0LocalServiceUnavailable = "local_service_unavailable" // 503
	CodeV0InternalError           = "internal_error"            // 502
)

// Codes of the current protocol that the mappings below name.
const (
	codeGatewayTimeout = "gateway_timeout"
	codeInternal       = "internal"
	codeUnavailable    = "unavailable"
)

// CodeForVersion0Agent returns the code a gateway sends a version 0 agent
// in place of code: gateway_timeout as timeout, internal as
// internal_error, the four codes of version 0 as they are, and any other
// code as invalid_request.
func CodeForVersion0Agent(code string) string {
	switch code {
	case codeGatewayTimeout:
		return CodeV0Timeout
	case codeInternal:
		return CodeV0InternalError
	case CodeV0InvalidRequest, CodeV0Timeout, CodeV0LocalServiceUnavailable, CodeV0InternalError:
		return code
	}
	return CodeV0InvalidRequest
}

// CodeForVersion0Gateway returns the code an agent sends a version 0
// gateway in place of code, chosen for the status the original gateway
// answers the public client with: gateway_timeout as timeout (504);
// unavailable, the agent shutting down, as local_service_unavailable (503,
// which a client may retry); invalid_request (400) and
// local_service_unavailable as they are; any other code, payload_too_large
// among them, as internal_error (502).
func CodeForVersion0Gateway(code string) string {
	switch code {
	case codeGatewayTimeout, CodeV0Timeout:
		return CodeV0Timeout
	case codeUnavailable, CodeV0LocalServiceUnavailable:
		return CodeV0LocalServiceUnavailable
	case CodeV0InvalidRequest:
		return code
	}
	return CodeV0InternalError
}

// CodeFromVersion0 returns the current code for a code a peer may have
// sent in version 0: timeout as gateway_timeout, internal_error as
// internal, any other code unchanged. Receivers apply it to every error
// they receive, whatever the peer's version: neither of the two codes is
// a current one.
func CodeFromVersion0(code string) string {
	switch code {
	case CodeV0Timeout:
		return codeGatewayTimeout
	case CodeV0InternalError:
		return codeInternal
	}
	return code
}
