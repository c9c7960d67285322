package integration

import "github.com/minio/minio-go/v7"

var minioListAll = minio.ListObjectsOptions{Recursive: true}
