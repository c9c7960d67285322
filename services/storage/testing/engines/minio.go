package engines

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailfleet/mailfleet/pkg/testport"
)

// MinIO is a real MinIO server on loopback.
type MinIO struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	proc      *process
}

// StartMinIO starts a MinIO server with data under dir and waits until it is
// ready. Stop it with Stop.
func StartMinIO(dir string) (*MinIO, error) {
	bin, err := binary("MAILFLEET_MINIO_BIN", "install-minio.sh")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := testport.Free()
	if err != nil {
		return nil, err
	}
	consolePort, err := testport.Free()
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "mailfleet-test",
		SecretKey: "mailfleet-test-secret",
	}
	m.proc = &process{
		name: "minio",
		bin:  bin,
		args: []string{"server", "--quiet",
			"--address", m.Endpoint,
			"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
			filepath.Join(dir, "data")},
		env: []string{
			"MINIO_ROOT_USER=" + m.AccessKey,
			"MINIO_ROOT_PASSWORD=" + m.SecretKey,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_CI_CD=1",
		},
		logPath: filepath.Join(dir, "minio.log"),
	}
	if err := m.Start(); err != nil {
		return nil, err
	}
	return m, nil
}

// Start starts a stopped server again with its data.
func (m *MinIO) Start() error {
	if err := m.proc.start(); err != nil {
		return err
	}
	if err := waitHTTP(context.Background(), "http://"+m.Endpoint+"/minio/health/ready", 60*time.Second); err != nil {
		m.proc.stop(syscall.SIGKILL)
		return fmt.Errorf("minio: %v\n%s", err, m.proc.logTail())
	}
	return nil
}

// Stop kills the server.
func (m *MinIO) Stop() { m.proc.stop(syscall.SIGKILL) }

// Client returns a minio-go client for the server.
func (m *MinIO) Client() (*minio.Client, error) {
	return minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
}

// NewBucket creates a bucket with a fresh name and returns the name.
func (m *MinIO) NewBucket(ctx context.Context) (string, error) {
	c, err := m.Client()
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("mf-test-%d", time.Now().UnixNano())
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", err
	}
	return name, nil
}
