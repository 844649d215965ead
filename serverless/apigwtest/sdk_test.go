package apigwtest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"
)

// TestManagementAPIWithSDK drives @connections with the AWS SDK's own
// client, the way the gateway's handlers will: BaseEndpoint with a stage
// path, static credentials, SigV4 signing.
func TestManagementAPIWithSDK(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle, WebSocketStage: "prod"})
	tr := httpClient(t)
	client := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		BaseEndpoint: aws.String(e.ManagementURL()),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:   tr,
	})
	ctx := testContext(t)

	c := dial(t, e, &websocket.DialOptions{HTTPHeader: map[string][]string{"User-Agent": {"ttf/0.1"}}})
	c.SetReadLimit(1 << 20)
	id := recv(t, rec.connect).RequestContext.ConnectionID

	if _, err := client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id),
		Data:         []byte(`{"type":"connection_established"}`),
	}); err != nil {
		t.Fatalf("PostToConnection: %v", err)
	}
	if got := readText(t, c); got != `{"type":"connection_established"}` {
		t.Errorf("client read %q", got)
	}

	info, err := client.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	if err != nil {
		t.Fatalf("GetConnection: %v", err)
	}
	if info.ConnectedAt == nil || info.LastActiveAt == nil || info.LastActiveAt.Before(*info.ConnectedAt) {
		t.Errorf("times %v %v", info.ConnectedAt, info.LastActiveAt)
	}
	if info.Identity == nil || aws.ToString(info.Identity.SourceIp) != "127.0.0.1" || aws.ToString(info.Identity.UserAgent) != "ttf/0.1" {
		t.Errorf("identity %+v", info.Identity)
	}

	_, err = client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id),
		Data:         bytes.Repeat([]byte("x"), DefaultMaxMessageBytes+1),
	})
	var tooLarge *types.PayloadTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("oversized post: %v, want *types.PayloadTooLargeException", err)
	}

	var gone *types.GoneException
	_, err = client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String("AAAAAAAAAAAAAAA="),
		Data:         []byte("x"),
	})
	if !errors.As(err, &gone) {
		t.Errorf("post to unknown connection: %v, want *types.GoneException", err)
	}

	if _, err := client.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Fatalf("DeleteConnection: %v", err)
	}
	if code := readCloseStatus(t, c); code != websocket.StatusNormalClosure {
		t.Errorf("client saw close %d", code)
	}
	recv(t, rec.disconnect)
	_, err = client.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	if !errors.As(err, &gone) {
		t.Errorf("GetConnection after delete: %v, want *types.GoneException", err)
	}
	_, err = client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("late")})
	if !errors.As(err, &gone) {
		t.Errorf("PostToConnection after delete: %v, want *types.GoneException", err)
	}
	if s := e.Stats(); s.Posts != 1 || s.GonePosts != 2 {
		t.Errorf("stats %+v", s)
	}
}
