/* The pod sandbox's process: holds the pod's namespaces open until the
 * kubelet stops the sandbox, and reaps the zombies of a pod that shares
 * its process namespace. Built statically into gitfaas.local/pause, since
 * no registry (and so no registry.k8s.io/pause) is reachable here. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { _exit(128 + sig); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {.sa_handler = stop};
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &term, NULL) || sigaction(SIGTERM, &term, NULL) ||
      sigaction(SIGCHLD, &child, NULL))
    return 1;
  for (;;) pause();
}
