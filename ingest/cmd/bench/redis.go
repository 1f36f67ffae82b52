package main

import (
	"runtime"

	"github.com/gomodule/redigo/redis"
)

// clearNamespace deletes every key of the bench's own namespace.
func clearNamespace(pool *redis.Pool, ns string) {
	conn := pool.Get()
	defer conn.Close()
	cursor := "0"
	for {
		reply, err := redis.Values(conn.Do("SCAN", cursor, "MATCH", ns+":*", "COUNT", 1000))
		if err != nil {
			return
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			_, _ = conn.Do("DEL", k)
		}
		if cursor == "0" {
			return
		}
	}
}

func numCPU() int { return runtime.NumCPU() }
