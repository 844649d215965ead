package serverless

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
)

// A post leaves a full buffer (LimitExceededException) to postRetrying,
// and keeps the retryer the client was given for everything else.
func TestNoThrottleRetriesKeepsTheClientsRetryer(t *testing.T) {
	o := apigatewaymanagementapi.Options{Retryer: retry.AddWithMaxAttempts(retry.NewStandard(), 7)}
	noThrottleRetries(&o)
	if n := o.Retryer.MaxAttempts(); n != 7 {
		t.Errorf("MaxAttempts = %d, want the client's 7", n)
	}
	if o.Retryer.IsErrorRetryable(&types.LimitExceededException{}) {
		t.Error("LimitExceededException is retried by the SDK")
	}
	throttled := &retryableErr{}
	if !o.Retryer.IsErrorRetryable(throttled) {
		t.Error("an error the client's retryer retries is no longer retried")
	}
	var empty apigatewaymanagementapi.Options
	noThrottleRetries(&empty)
	if empty.Retryer == nil || empty.Retryer.IsErrorRetryable(&types.LimitExceededException{}) {
		t.Error("without a retryer of the client's: none, or one that retries a full buffer")
	}
}

// retryableErr is an error that says it may be retried (retry.RetryableError).
type retryableErr struct{}

func (*retryableErr) Error() string        { return "try again" }
func (*retryableErr) RetryableError() bool { return true }
