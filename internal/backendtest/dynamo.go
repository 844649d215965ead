package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The ListTables call the probe makes, as the DynamoDB API's JSON protocol
// (version 1.0) sends it.
const (
	dynamoTarget      = "DynamoDB_20120810.ListTables"
	dynamoContentType = "application/x-amz-json-1.0"
	dynamoBody        = "{}"
)

// dynamoSigner signs the probe with the dummy credentials the tests' own
// clients use; dynalite accepts any.
var dynamoSigner = sigV4{accessKey: "test", secretKey: "test", region: "us-east-1", service: "dynamodb"}

// probeDynamo POSTs a signed ListTables call to endpoint and requires a
// JSON answer with a TableNames list, or a JSON error whose __type is
// DynamoDB's (a namespace of Amazon's, "#", a name), as a DynamoDB that
// refuses the dummy credentials answers. ctx bounds the whole exchange.
func probeDynamo(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not something to connect to, so not "answered".
		return &probeError{backend: "DynamoDB", addr: endpoint, err: fmt.Errorf("endpoint %q is not an http or https URL", endpoint)}
	}
	addr := u.Host
	notDynamo := func(err error) error {
		return &probeError{backend: "DynamoDB", addr: addr, answered: true, err: err}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(dynamoBody))
	if err != nil {
		return notDynamo(err)
	}
	req.Header.Set("Content-Type", dynamoContentType)
	req.Header.Set("X-Amz-Target", dynamoTarget)
	dynamoSigner.sign(req, []byte(dynamoBody), time.Now())

	// A transport of its own, without proxies or kept connections, so that
	// the probe leaves no goroutine behind and talks to endpoint itself.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &probeError{backend: "DynamoDB", addr: addr, err: op}
		}
		return notDynamo(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return notDynamo(fmt.Errorf("HTTP %s, reading the body: %w", resp.Status, err))
	}
	if err := dynamoAnswer(resp.Status, resp.Header.Get("Content-Type"), body); err != nil {
		return notDynamo(err)
	}
	return nil
}

// dynamoAnswer returns nil if a response to ListTables is DynamoDB's, and
// otherwise an error that says what the response was instead.
func dynamoAnswer(status, contentType string, body []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		media, _, _ := mime.ParseMediaType(contentType)
		if media == "" {
			media = "no Content-Type"
		}
		return fmt.Errorf("HTTP %s (%s), not a JSON object: %s", status, media, excerpt(string(body)))
	}
	if raw, ok := fields["TableNames"]; ok {
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return fmt.Errorf("HTTP %s, TableNames is not a list of names: %s", status, excerpt(string(raw)))
		}
		return nil
	}
	if raw, ok := fields["__type"]; ok {
		var typ string
		if json.Unmarshal(raw, &typ) == nil && dynamoErrorType(typ) {
			return nil
		}
		return fmt.Errorf("HTTP %s, __type %s is not a DynamoDB error", status, excerpt(string(raw)))
	}
	return fmt.Errorf("HTTP %s, JSON without TableNames or __type: %s", status, excerpt(string(body)))
}

// dynamoErrorType reports whether typ has the form of DynamoDB's error
// types: "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
// "com.amazon.coral.service#UnrecognizedClientException".
func dynamoErrorType(typ string) bool {
	ns, name, ok := strings.Cut(typ, "#")
	return ok && name != "" && strings.HasPrefix(ns, "com.amazon")
}
