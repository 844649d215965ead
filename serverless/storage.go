package serverless

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/http-tunnel/tunnel/protocol"
)

// storedHead is the first line of a stored response (see the package doc):
// either a response's status, headers and processing time, or the error
// the agent answered with.
type storedHead struct {
	StatusCode           int                 `json:"status_code,omitempty"`
	Headers              map[string][]string `json:"headers,omitempty"`
	ProcessingTimeMillis int64               `json:"processing_time_ms,omitempty"`
	Error                string              `json:"error,omitempty"`
	Message              string              `json:"message,omitempty"`
}

// responseChunk turns one http_response message into the chunk the pending
// table stores: its index and count (a message without chunk fields is
// chunk 0 of 1), and its data, which for chunk 0 starts with the head line.
func responseChunk(m *protocol.HTTPResponse) (index, count int, data []byte, err error) {
	body, err := protocol.DecodeBody(m.Body)
	if err != nil {
		return 0, 0, nil, err
	}
	index, count = m.ChunkIndex, m.ChunkCount
	if count <= 1 {
		index, count = 0, 1
	}
	if index > 0 {
		return index, count, body, nil
	}
	head, err := json.Marshal(storedHead{StatusCode: m.StatusCode, Headers: m.Headers, ProcessingTimeMillis: m.ProcessingTimeMillis})
	if err != nil {
		return 0, 0, nil, err
	}
	data = make([]byte, 0, len(head)+1+len(body))
	data = append(append(append(data, head...), '\n'), body...)
	return index, count, data, nil
}

// errorChunk turns an error message into a stored response of one chunk.
func errorChunk(m *protocol.Error) ([]byte, error) {
	head, err := json.Marshal(storedHead{Error: m.Code, Message: m.Message})
	if err != nil {
		return nil, err
	}
	return append(head, '\n'), nil
}

// parseStored splits a stored response into its head and body.
func parseStored(data []byte) (storedHead, []byte, error) {
	line, body, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return storedHead{}, nil, errors.New("stored response has no head line")
	}
	var h storedHead
	if err := json.Unmarshal(line, &h); err != nil {
		return storedHead{}, nil, fmt.Errorf("stored response head: %w", err)
	}
	if h.Error == "" && (h.StatusCode < 100 || h.StatusCode > 999) {
		return storedHead{}, nil, fmt.Errorf("stored response has status %d", h.StatusCode)
	}
	return h, body, nil
}
