package cluster

import (
	"context"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// A server built from the zero Secret (no secret loaded, and not the
// explicit --insecure) authenticates nobody: every call is refused before
// any handler runs, with or without a credential.
func TestZeroSecretServerRefusesEveryCall(t *testing.T) {
	addr := serve(t, Secret{}.ServerOptions(nil), func(s *grpc.Server) {
		sluicev1.RegisterDriverServer(s, sluicev1.UnimplementedDriverServer{})
	})
	for name, opts := range map[string][]grpc.DialOption{
		"no credential": {grpc.WithTransportCredentials(insecure.NewCredentials())},
		"a real secret's credential": {grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(callCreds{mustSecret(t, "zero-secret-test-0123456789abcdef").key})},
	} {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = sluicev1.NewDriverClient(conn).ListJobs(ctx, &sluicev1.ListJobsRequest{})
		cancel()
		conn.Close()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: call to a zero-secret server: %v, want Unauthenticated", name, err)
		}
	}
}
