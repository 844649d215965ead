package serverless

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// S3Bodies is a dynamostore.BodyStore in an S3 bucket: response chunks
// over dynamostore.Options.BodyThreshold are stored there as objects
// instead of in the pending table, since for large bodies a PUT and a GET
// cost less than DynamoDB's writes of 1 KB and reads of 4 KB (see the
// cost table of docs/serverless.md). The bucket should expire objects
// with a lifecycle rule (template.yaml's expires them after a day): the
// Store never deletes them, as it leaves pending rows to TTL.
//
// Client and Bucket are required. An S3Bodies is safe for concurrent use.
// It needs s3:PutObject and s3:GetObject on the bucket's objects.
type S3Bodies struct {
	// Client sends the requests.
	Client *s3.Client
	// Bucket is the bucket's name.
	Bucket string
	// Prefix is put before every key; empty means none.
	Prefix string
}

var _ dynamostore.BodyStore = (*S3Bodies)(nil)

// PutBody implements dynamostore.BodyStore with one PutObject.
func (b *S3Bodies) PutBody(ctx context.Context, key string, data []byte) error {
	_, err := b.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(b.Bucket),
		Key:           aws.String(b.Prefix + key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	return nil
}

// GetBody implements dynamostore.BodyStore with one GetObject.
func (b *S3Bodies) GetBody(ctx context.Context, key string) ([]byte, error) {
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(b.Prefix + key)})
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", key, err)
	}
	return data, nil
}
