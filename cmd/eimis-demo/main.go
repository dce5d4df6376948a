// Command eimis-demo runs a small demo messenger connected to an EIMIS hub
// through the Bridge Protocol: its own users, its own web page, and every
// other connected app and Matrix client reachable through the hub.
//
//	eimis-demo --name "App A" --listen 127.0.0.1:8101 --hub http://127.0.0.1:8008 \
//	  --token-file a.token --users 810000000017,810000000025
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eimis-hub/eimis/bridges/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "eimis-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "App A", "name shown on the page")
	color := flag.String("color", "#0063cb", "accent colour of the page")
	listen := flag.String("listen", "127.0.0.1:8101", "address of the web page")
	hubURL := flag.String("hub", "http://127.0.0.1:8008", "hub URL")
	tokenFile := flag.String("token-file", "", "file holding the bridge token (eimis-hub bridge add); or EIMIS_BRIDGE_TOKEN")
	users := flag.String("users", "", "comma-separated idNats of the practitioners using this app")
	flag.Parse()
	token := os.Getenv("EIMIS_BRIDGE_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" || *users == "" {
		return errors.New("a bridge token (--token-file or EIMIS_BRIDGE_TOKEN) and --users are required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := demo.New(demo.Config{Name: *name, Color: *color, HubURL: *hubURL, Token: token,
		Users: strings.Split(*users, ","), Log: log.With("app", *name)})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		if err := app.Run(ctx); err != nil {
			log.Error("bridge stopped", "err", err)
			stop()
		}
	}()
	srv := &http.Server{Addr: *listen, Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo messenger", "name", *name, "url", "http://"+*listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
