package protocol

// Message is one protocol message. The pointer types of this package —
// *[Ping], *[Pong], *[Drain], *[Ready], *[ConnectionEstablished],
// *[HTTPRequest], *[HTTPResponse] and *[Error] — are its implementations:
// every Type method has a pointer receiver, so a type switch on the result of
// [Unmarshal] names pointer types, and [Marshal] accepts nothing else.
//
// The struct tags on the concrete types name the JSON members; [Marshal],
// not encoding/json, decides which members are written (it puts "type"
// first and writes the members the original protocol requires even when
// they are empty), so always encode with Marshal.
type Message interface {
	// Type returns the wire type name, one of the Type constants. It is
	// valid on a nil pointer.
	Type() string
}

// Ping asks the peer to answer with [Pong]. In json mode the agent sends one
// at least every five minutes, because API Gateway closes a connection idle
// for ten; the gateway answers it. Mux mode uses yamux pings instead. Ping
// has no fields.
type Ping struct{}

// Pong answers [Ping]. It has no fields.
type Pong struct{}

// Drain travels on a mux-mode control stream. From the agent it says the
// agent is leaving: the gateway stops routing new requests to the connection,
// releases the tunnel so that its name is free, closes the connection's idle
// HTTP streams and lets requests in flight finish. The gateway then answers
// with a Drain of its own on the same stream, so the agent knows the release
// is done before it closes. Drain has no fields.
type Drain struct{}

// Ready is the agent's first message on a new connection, in both modes. The
// zero value is what the original agent sends: version 0, no name, a
// generated tunnel ID.
type Ready struct {
	// Version is the highest protocol version the agent speaks; 0 (omitted)
	// is the original protocol. Must not be negative.
	Version int `json:"version,omitempty"`

	// Name is the requested tunnel name, a lower-case DNS label. Empty asks
	// the gateway to generate an ID. Ignored when TunnelID and ResumeToken
	// resume a tunnel.
	Name string `json:"name,omitempty"`

	// TunnelID is, together with ResumeToken, the tunnel this connection
	// resumes after a reconnect. Empty starts a new tunnel.
	TunnelID string `json:"tunnel_id,omitempty"`

	// ResumeToken is the secret the gateway issued in
	// [ConnectionEstablished] for TunnelID; it proves that this connection
	// belongs to the agent that held the tunnel before. Never log it.
	ResumeToken string `json:"resume_token,omitempty"`

	// Access is what the agent asks the gateway to require of public
	// clients before anything reaches the tunnel (version 3). Nil: an open
	// URL. It carries secrets: never log it.
	Access *Access `json:"access,omitempty"`

	// Pool asks to join the pool of agents that serve the tunnel name
	// together (version 4): public requests are spread over every agent
	// connected with the same name and identity. It needs Name, or
	// TunnelID with ResumeToken.
	Pool bool `json:"pool,omitempty"`
}

// Access is a protected tunnel's requirements on its public clients, as an
// agent asks for them in [Ready] (version 3). A client must come from an
// allowed address and not a denied one, and, when credentials are listed,
// present one of them; the gateway checks it before anything reaches the
// agent, and keeps only hashes of the credentials.
type Access struct {
	// Basic lists user/password pairs for HTTP Basic authentication.
	Basic []BasicCredential `json:"basic,omitempty"`
	// Bearer lists tokens for "Authorization: Bearer".
	Bearer []string `json:"bearer,omitempty"`
	// AllowIPs, if not empty, are the only client addresses admitted, as
	// IP addresses or CIDR prefixes ("203.0.113.0/24", "2001:db8::/32").
	AllowIPs []string `json:"allow_ips,omitempty"`
	// DenyIPs are client addresses refused, in the same forms.
	DenyIPs []string `json:"deny_ips,omitempty"`
}

// BasicCredential is one user and password of HTTP Basic authentication.
type BasicCredential struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Limits are the gateway's limits for one connection, announced in
// [ConnectionEstablished]. A zero field means "not announced": the agent then
// assumes the default given on that field.
type Limits struct {
	// MaxBodyBytes is the largest request or response body, in decoded
	// bytes, that crosses this connection in json mode. Zero means
	// [DefaultMaxBodyBytes].
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	// MaxMessageBytes is the largest encoded json-mode message the gateway
	// accepts. Zero means the constant [MaxMessageBytes].
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`

	// MaxFrameBytes is the largest WebSocket frame the gateway accepts in
	// json mode. Zero means the constant [MaxFrameBytes].
	MaxFrameBytes int `json:"max_frame_bytes,omitempty"`

	// HeartbeatMillis is the heartbeat interval in milliseconds: the yamux
	// keepalive interval in mux mode, the longest gap between pings in json
	// mode. Zero means 15000 in mux mode and 300000 in json mode.
	HeartbeatMillis int64 `json:"heartbeat_interval_ms,omitempty"`

	// RequestTimeoutMillis is how long, in milliseconds, the gateway waits
	// for a response (in mux mode, for its headers) before it answers the
	// public client 504; a response that arrives later is discarded. Zero
	// means 25000 in json mode and "not announced" in mux mode.
	RequestTimeoutMillis int64 `json:"request_timeout_ms,omitempty"`
}

// ConnectionEstablished is the gateway's answer to an accepted [Ready], in
// both modes. ConnectionID, TunnelID and PublicURL are required: the original
// agent cannot decode the message without them.
type ConnectionEstablished struct {
	// Version is the protocol version both sides use on this connection:
	// the smaller of the agent's and the gateway's. 0 (omitted) is the
	// original protocol.
	Version int `json:"version,omitempty"`

	// ConnectionID identifies this WebSocket connection at the gateway.
	ConnectionID string `json:"connection_id"`

	// TunnelID is the tunnel's ID: the requested name, the resumed ID, or
	// one the gateway generated (16 characters of [a-z0-9]).
	TunnelID string `json:"tunnel_id"`

	// PublicURL is the URL public clients use to reach the tunnel: the
	// subdomain URL when the gateway routes by host, else the path-based
	// one.
	PublicURL string `json:"public_url"`

	// SubdomainURL is https://<tunnel_id>.<domain>, when the gateway routes
	// by host. Empty otherwise.
	SubdomainURL string `json:"subdomain_url,omitempty"`

	// PathBasedURL is https://<domain>/<tunnel_id>, when the gateway routes
	// by path. Empty otherwise.
	PathBasedURL string `json:"path_based_url,omitempty"`

	// ResumeToken is the secret that lets a later connection resume this
	// tunnel (see [Ready]). Empty means the gateway does not support
	// resuming. Never log it.
	ResumeToken string `json:"resume_token,omitempty"`

	// Limits are the connection's limits; nil means every default.
	Limits *Limits `json:"limits,omitempty"`

	// Pool says the connection joined the tunnel's pool (version 4), as
	// [Ready] asked. A gateway that does not know pools leaves it out.
	Pool bool `json:"pool,omitempty"`
}

// HTTPRequest carries one public request from the gateway to the agent in
// json mode.
//
// A body too large for one message is split into ChunkCount messages with
// the same RequestID (protocol version 1 and later only). The first, with
// ChunkIndex 0, carries every field, the first piece of the body and
// BodySize; the others, continuations, carry only RequestID, ChunkIndex,
// ChunkCount and their piece of Body. A message is the first (or only) one
// exactly when ChunkIndex is 0; required fields are checked on that one.
type HTTPRequest struct {
	// RequestID correlates the request with its response. Required.
	RequestID string `json:"request_id"`

	// Method is the HTTP method. Required on the first message.
	Method string `json:"method"`

	// URI is the request's path and raw query, byte-for-byte as the public
	// client sent them (after the tunnel prefix is removed in path-based
	// routing). Required on the first message.
	URI string `json:"uri"`

	// Headers maps lower-case header names to all their values, in the
	// order received: two Set-Cookie stay two. Marshal writes {} for nil on
	// the first message, because the original agent requires the member;
	// Unmarshal returns nil rather than an empty map, and drops names
	// without values.
	Headers map[string][]string `json:"headers"`

	// Body is this message's piece of the body, standard base64 with
	// padding (see [EncodeBody]). Always written, possibly "".
	Body string `json:"body"`

	// Timestamp is when the gateway received the request, in Unix
	// milliseconds. Written on the first message even when zero.
	Timestamp int64 `json:"timestamp"`

	// RemoteAddr is the public client's address as the gateway determined
	// it, "ip:port" (port 0 when only the IP is known, as behind a proxy
	// that sets X-Forwarded-For). Version 2; empty when unknown.
	RemoteAddr string `json:"remote_addr,omitempty"`

	// ChunkIndex is this message's position among ChunkCount, from 0.
	ChunkIndex int `json:"chunk_index,omitempty"`

	// ChunkCount is the number of messages that carry the body; 0 or 1
	// means the body is not chunked.
	ChunkCount int `json:"chunk_count,omitempty"`

	// BodySize is the total decoded body size in bytes of a chunked body,
	// set on the first message. Zero when not chunked.
	BodySize int64 `json:"body_size,omitempty"`
}

// HTTPResponse carries the local service's response from the agent to the
// gateway in json mode. Chunking works as for [HTTPRequest].
type HTTPResponse struct {
	// RequestID is the RequestID of the [HTTPRequest] answered. Required.
	RequestID string `json:"request_id"`

	// StatusCode is the HTTP status, 200 to 599. Written on the first
	// message even when zero; a gateway answers 502 for a status out of
	// range rather than failing to decode it.
	StatusCode int `json:"status_code"`

	// Headers is as for [HTTPRequest].
	Headers map[string][]string `json:"headers"`

	// Body is as for [HTTPRequest].
	Body string `json:"body"`

	// ProcessingTimeMillis is how long the local service took, in
	// milliseconds. Informational.
	ProcessingTimeMillis int64 `json:"processing_time_ms,omitempty"`

	// ChunkIndex, ChunkCount and BodySize are as for [HTTPRequest].
	ChunkIndex int   `json:"chunk_index,omitempty"`
	ChunkCount int   `json:"chunk_count,omitempty"`
	BodySize   int64 `json:"body_size,omitempty"`
}

// Error reports a failure, in either direction: the gateway refusing a
// handshake, the agent failing to forward a request, or either side
// rejecting a malformed request or chunk.
type Error struct {
	// RequestID is the request the error is about; empty for an error
	// about the connection (handshake errors).
	RequestID string `json:"request_id,omitempty"`

	// Code is a stable snake_case code listed in spec.md. Required.
	Code string `json:"code"`

	// Message is a human-readable description. Always written, possibly
	// "": the original requires the member.
	Message string `json:"message"`
}

// Type returns TypePing.
func (*Ping) Type() string { return TypePing }

// Type returns TypePong.
func (*Pong) Type() string { return TypePong }

// Type returns TypeDrain.
func (*Drain) Type() string { return TypeDrain }

// Type returns TypeReady.
func (*Ready) Type() string { return TypeReady }

// Type returns TypeConnectionEstablished.
func (*ConnectionEstablished) Type() string { return TypeConnectionEstablished }

// Type returns TypeHTTPRequest.
func (*HTTPRequest) Type() string { return TypeHTTPRequest }

// Type returns TypeHTTPResponse.
func (*HTTPResponse) Type() string { return TypeHTTPResponse }

// Type returns TypeError.
func (*Error) Type() string { return TypeError }
