package protocol

// Version is the protocol version this package speaks. An agent announces
// its version in [Ready]; the gateway answers with the version both will use
// (the smaller of the two) in [ConnectionEstablished]. An agent that sends no
// version speaks version 0, the original protocol, which knows neither mux
// mode nor chunked bodies. Version 1 adds mux mode and chunking; version 2
// tells the agent each public client's address: a PROXY header at the start
// of every mux-mode HTTP stream (see [AppendProxyHeader]) and
// [HTTPRequest.RemoteAddr] in json mode. Version 3 adds protected public
// URLs: [Ready.Access].
const Version = 4

// WebSocket subprotocols, offered by the agent in Sec-WebSocket-Protocol
// (mux first, then json) and echoed by the gateway for the one it picks.
// An agent that offers none is a version 0 agent and gets json mode.
const (
	// SubprotocolMux selects mux mode: after the handshake the WebSocket
	// carries a yamux session in binary messages.
	SubprotocolMux = "http-tunnel.mux.v1"

	// SubprotocolJSON selects json mode: every message, before and after
	// the handshake, is one JSON text message.
	SubprotocolJSON = "http-tunnel.json.v1"
)

// UpgradeMux is the HTTP/1.1 Upgrade token of the raw transport: an agent
// that sends "Connection: Upgrade" and "Upgrade: http-tunnel.mux.v1" asks
// for mux mode straight on the connection, without WebSocket framing. A
// gateway that knows it answers 101 with the same token; after that the
// handshake's messages are lines of JSON, each ended by '\n', and then the
// yamux session's bytes follow. An agent whose upgrade is refused opens a
// WebSocket instead (spec.md, "Raw transport").
const UpgradeMux = "http-tunnel.mux.v1"

// ConnectPath is the request path of the gateway's agent endpoint, the URL
// path an agent opens its WebSocket to. It starts with "/_" so that it cannot
// collide with a tunnel ID in path-based routing: tunnel IDs are DNS labels,
// which never contain an underscore.
const ConnectPath = "/_tunnel/connect"

// Size caps, in bytes of encoded JSON (or of one WebSocket frame). A reader
// enforces the cap that applies before it parses anything; see [Unmarshal].
const (
	// MaxHandshakeBytes caps one handshake message: ready,
	// connection_established or error, in either mode.
	MaxHandshakeBytes = 16 << 10

	// MaxControlBytes caps one message on a mux-mode control stream,
	// excluding the newline that ends it.
	MaxControlBytes = 4 << 10

	// MaxMessageBytes caps one json-mode message. It is the WebSocket
	// message limit of AWS API Gateway, which json mode must pass through.
	MaxMessageBytes = 128 << 10

	// MaxFrameBytes caps one WebSocket frame in json mode (API Gateway's
	// frame limit). Senders fragment a larger message into continuation
	// frames of at most this size.
	MaxFrameBytes = 32 << 10

	// DefaultMaxBodyBytes is the request and response body limit in json
	// mode when the gateway announces none in [Limits]. Bodies larger than
	// one message cross as chunks (see [HTTPRequest]).
	DefaultMaxBodyBytes = 2 << 20
)

// Wire type names: the value of the "type" member of every message. They
// never change; new types are added, never renamed.
const (
	TypePing                  = "ping"
	TypePong                  = "pong"
	TypeReady                 = "ready"
	TypeConnectionEstablished = "connection_established"
	TypeHTTPRequest           = "http_request"
	TypeHTTPResponse          = "http_response"
	TypeError                 = "error"
	TypeDrain                 = "drain"
)
