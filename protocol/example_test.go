package protocol_test

import (
	"errors"
	"fmt"

	"github.com/http-tunnel/tunnel/protocol"
)

func ExampleMarshal() {
	data, err := protocol.Marshal(&protocol.HTTPResponse{
		RequestID:  "req_1",
		StatusCode: 200,
		Headers:    map[string][]string{"set-cookie": {"a=1", "b=2"}},
		Body:       protocol.EncodeBody([]byte("hello")),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(data))
	// Output:
	// {"type":"http_response","request_id":"req_1","status_code":200,"headers":{"set-cookie":["a=1","b=2"]},"body":"aGVsbG8="}
}

func ExampleUnmarshal() {
	data := []byte(`{"type":"http_request","request_id":"req_1","method":"POST","uri":"/hook?x=1",` +
		`"headers":{"content-type":["text/plain"]},"body":"aGVsbG8=","timestamp":1700000000000}`)

	m, err := protocol.Unmarshal(data, protocol.MaxMessageBytes)
	if errors.Is(err, protocol.ErrUnknownType) {
		return // a newer peer's message: ignore it
	}
	if err != nil {
		panic(err)
	}
	switch m := m.(type) {
	case *protocol.HTTPRequest:
		body, err := protocol.DecodeBody(m.Body)
		if err != nil {
			panic(err)
		}
		fmt.Println(m.Method, m.URI, m.Headers["content-type"], string(body))
	case *protocol.Ping:
		fmt.Println("ping")
	}
	// Output:
	// POST /hook?x=1 [text/plain] hello
}

// A message from a newer peer has a type this package does not know; the
// error says so, and the receiver carries on.
func ExampleUnmarshal_unknownType() {
	_, err := protocol.Unmarshal([]byte(`{"type":"stream_stats","open":3}`), 0)
	fmt.Println(errors.Is(err, protocol.ErrUnknownType))
	// Output:
	// true
}

func ExampleDecodeBody() {
	for _, s := range []string{"aGk=", "aGk", "aGk="[:3] + "!"} {
		b, err := protocol.DecodeBody(s)
		fmt.Printf("%q %q %v\n", s, b, errors.Is(err, protocol.ErrMalformed))
	}
	// Output:
	// "aGk=" "hi" false
	// "aGk" "hi" false
	// "aGk!" "" true
}
