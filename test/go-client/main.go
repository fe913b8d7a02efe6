// Command go-client runs the Go examples of the seed's gRPC contract (../shared/seed/grpc-api.md)
// against a running Conveer, as literally as the seed writes them:
//
//   - "Создание клиента": NewClient(address) with grpc.Dial, plaintext HTTP/2, 10 MB receive limit;
//   - AccountService.GetCredentials, printing "Login: %s, Password: %s";
//   - ProxyService.AllocateProxy (Platform "vk", PreferredCountry "RU") and the seed's proxyURL;
//   - "Обработка ошибок": status.FromError with codes.NotFound / codes.ResourceExhausted;
//   - "Health Checks": grpc_health_v1 Check for "conveer.ProxyService" -> SERVING.
//
// The one deviation: Debian's grpc-go (1.33) has no google.golang.org/grpc/credentials/insecure
// (added in 1.34), so NewClient uses grpc.WithInsecure(), its predecessor with the same effect.
//
// Flags (or env): -account-addr (ACCOUNT_SERVICE_GRPC_ADDR), -proxy-addr (PROXY_SERVICE_GRPC_ADDR),
// -account-id (an account with credentials; the pool has a free proxy for it), -busy-account-id
// (optional: a second account; the pool must then be full, so ResourceExhausted is expected),
// -unknown-account-id (optional: an account that does not exist; NotFound is expected).
// Exits non-zero on any answer other than the expected one; prints "GO CLIENT OK" at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "conveer/proto"
)

// NewClient is the seed's "Создание клиента", with grpc.WithInsecure() for
// grpc.WithTransportCredentials(insecure.NewCredentials()) (see the package comment).
func NewClient(address string) (*grpc.ClientConn, pb.ProxyServiceClient, error) {
	conn, err := grpc.Dial(address,
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(10*1024*1024), // 10MB
		),
	)
	if err != nil {
		return nil, nil, err
	}

	client := pb.NewProxyServiceClient(conn)
	return conn, client, nil
}

// getCredentials is the seed's AccountService example (the account id comes from the flag).
func getCredentials(ctx context.Context, conn *grpc.ClientConn, accountID string) {
	client := pb.NewAccountServiceClient(conn)
	resp, err := client.GetCredentials(ctx, &pb.GetCredentialsRequest{
		AccountId: accountID,
	})
	if err != nil {
		log.Fatalf("Failed to get credentials: %v", err)
	}
	fmt.Printf("Login: %s, Password: %s\n", resp.Login, resp.Password)
	fmt.Printf("Phone: %s\n", resp.Phone)
}

// allocateProxy is the seed's ProxyService example; it returns the seed's proxyURL.
func allocateProxy(ctx context.Context, conn *grpc.ClientConn, accountID string) string {
	client := pb.NewProxyServiceClient(conn)
	proxy, err := client.AllocateProxy(ctx, &pb.AllocateProxyRequest{
		AccountId:        accountID,
		Platform:         "vk",
		PreferredCountry: "RU",
	})
	if err != nil {
		log.Fatalf("Failed to allocate proxy: %v", err)
	}
	proxyURL := fmt.Sprintf("%s://%s:%s@%s:%d",
		proxy.Protocol, proxy.Username, proxy.Password, proxy.Host, proxy.Port)
	return proxyURL
}

// allocateWithErrorHandling is the seed's "Обработка ошибок" block around AllocateProxy.
func allocateWithErrorHandling(ctx context.Context, client pb.ProxyServiceClient, req *pb.AllocateProxyRequest) error {
	resp, err := client.AllocateProxy(ctx, req)
	if err != nil {
		st, ok := status.FromError(err)
		if ok {
			switch st.Code() {
			case codes.NotFound:
				log.Printf("Account not found")
			case codes.ResourceExhausted:
				log.Printf("No available proxies")
			case codes.Unavailable:
				log.Printf("Service unavailable, retry later")
			default:
				log.Printf("RPC error: %v", st.Message())
			}
		}
		return err
	}
	log.Printf("Allocated proxy %s (%s:%d)", resp.Id, resp.Host, resp.Port)
	return nil
}

// expectCode runs the error-handling example and fails unless the call ends with want.
func expectCode(ctx context.Context, client pb.ProxyServiceClient, accountID string, want codes.Code) {
	err := allocateWithErrorHandling(ctx, client, &pb.AllocateProxyRequest{
		AccountId:        accountID,
		Platform:         "vk",
		PreferredCountry: "RU",
	})
	if got := status.Code(err); got != want {
		log.Fatalf("AllocateProxy(%s): want %v, got %v (%v)", accountID, want, got, err)
	}
	fmt.Printf("AllocateProxy(%s): %v as expected: %s\n", accountID, want, status.Convert(err).Message())
}

// healthCheck is the seed's "Health Checks" example; unhealthy is fatal here.
func healthCheck(ctx context.Context, conn *grpc.ClientConn, service string) {
	healthClient := grpc_health_v1.NewHealthClient(conn)
	resp, err := healthClient.Check(ctx, &grpc_health_v1.HealthCheckRequest{
		Service: service,
	})
	if err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		log.Printf("Service unhealthy: %v", resp.GetStatus())
		log.Fatalf("health %s: status %v, error %v", service, resp.GetStatus(), err)
	}
	fmt.Printf("Health %s: %v\n", service, resp.Status)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout) // one ordered stream for the caller to read
	accountAddr := flag.String("account-addr", envOr("ACCOUNT_SERVICE_GRPC_ADDR", "localhost:50051"), "AccountService address")
	proxyAddr := flag.String("proxy-addr", envOr("PROXY_SERVICE_GRPC_ADDR", "localhost:50052"), "ProxyService address")
	accountID := flag.String("account-id", os.Getenv("GO_CLIENT_ACCOUNT_ID"), "account to read credentials of and allocate a proxy for")
	busyAccountID := flag.String("busy-account-id", os.Getenv("GO_CLIENT_BUSY_ACCOUNT_ID"), "second account; AllocateProxy must answer ResourceExhausted")
	unknownAccountID := flag.String("unknown-account-id", os.Getenv("GO_CLIENT_UNKNOWN_ACCOUNT_ID"), "absent account; AllocateProxy must answer NotFound")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	flag.Parse()
	if *accountID == "" {
		log.Fatalf("-account-id (or GO_CLIENT_ACCOUNT_ID) is required")
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	accountConn, _, err := NewClient(*accountAddr)
	if err != nil {
		log.Fatalf("dial %s: %v", *accountAddr, err)
	}
	defer accountConn.Close()
	conn, proxyClient, err := NewClient(*proxyAddr)
	if err != nil {
		log.Fatalf("dial %s: %v", *proxyAddr, err)
	}
	defer conn.Close()

	getCredentials(ctx, accountConn, *accountID)

	proxyURL := allocateProxy(ctx, conn, *accountID)
	fmt.Printf("Proxy URL: %s\n", proxyURL)
	// Sticky: allocating again for the same account returns the same proxy.
	if again := allocateProxy(ctx, conn, *accountID); again != proxyURL {
		log.Fatalf("second AllocateProxy for %s gave %s, first gave %s", *accountID, again, proxyURL)
	}

	if *busyAccountID != "" {
		expectCode(ctx, proxyClient, *busyAccountID, codes.ResourceExhausted)
	}
	if *unknownAccountID != "" {
		expectCode(ctx, proxyClient, *unknownAccountID, codes.NotFound)
	}

	healthCheck(ctx, conn, "conveer.ProxyService")
	healthCheck(ctx, accountConn, "conveer.AccountService")

	fmt.Println("GO CLIENT OK")
}
