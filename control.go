package tunnel

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/http-tunnel/tunnel/protocol"
)

// acceptControl reads the control streams the agent opens, each on a
// goroutine of its own while it is open, until the session ends.
func (sess *session) acceptControl() {
	for {
		st, err := sess.mux.AcceptStream()
		if err != nil {
			return
		}
		go sess.control(st)
	}
}

// control reads newline-delimited control messages from one stream.
func (sess *session) control(st net.Conn) {
	defer st.Close()
	br := bufio.NewReaderSize(st, 512)
	for {
		line, err := readLine(br, protocol.MaxControlBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				sess.log.Info("control stream closed", slog.Any("err", err))
			}
			return
		}
		msg, err := protocol.Unmarshal(line, protocol.MaxControlBytes)
		if errors.Is(err, protocol.ErrUnknownType) {
			continue
		}
		if err != nil {
			sess.log.Info("malformed control message", slog.Any("err", err))
			return
		}
		if _, ok := msg.(*protocol.Drain); ok {
			sess.drain()
			// Acknowledge, so the agent knows its name is free.
			b, _ := protocol.Marshal(&protocol.Drain{})
			if _, err := st.Write(append(b, '\n')); err != nil {
				return
			}
		}
	}
}

// readLine reads one '\n'-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, protocol.ErrTooLarge
		}
		line = append(line, chunk...)
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
