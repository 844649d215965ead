package apigwtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-lambda-go/events"

	"github.com/http-tunnel/tunnel/serverless/apigwtest"
)

// ExampleStart serves an HTTP API whose Lambda handler echoes what API
// Gateway tells it about the request.
func ExampleStart() {
	emu, err := apigwtest.Start(apigwtest.Config{
		HTTPStage: "prod",
		HTTP: func(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			return events.APIGatewayV2HTTPResponse{
				StatusCode: http.StatusOK,
				Headers:    map[string]string{"content-type": "text/plain"},
				Body:       fmt.Sprintf("%s %s ? %s tags=%s", ev.RequestContext.HTTP.Method, ev.RawPath, ev.RawQueryString, ev.QueryStringParameters["tag"]),
			}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emu.Close()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(emu.HTTPURL() + "/abc123/hello%20world?tag=a&tag=b%2Fc")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	fmt.Println("invocations:", emu.Stats().Invocations())
	// Output:
	// 200 GET /prod/abc123/hello world ? tag=a&tag=b%2Fc tags=a,b/c
	// invocations: 1
}
