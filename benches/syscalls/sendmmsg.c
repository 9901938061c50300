/*
 * CPU per UDP datagram sent on loopback: one sendmsg(2) per datagram against sendmmsg(2)
 * batches, each datagram to a different socket (as a server's fan-out sends one datagram to
 * each member). BENCHMARKS.md, "The ACK path is what Redis does not pay for".
 *
 *   gcc -O2 -pthread benches/syscalls/sendmmsg.c -o /tmp/sendmmsg
 *   for b in 1 8 32 1 8 32; do /tmp/sendmmsg $b; done
 *
 * The sender is pinned to CPU 0 and its own thread's CPU time is reported; a thread on CPU 1
 * drains the 64 receiving sockets. Bounded: 200,000 datagrams of 120 bytes, then it stops.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define DATAGRAMS 200000
#define SOCKETS 64
#define MAX_BATCH 64

static int rx[SOCKETS];
static struct sockaddr_in rx_addr[SOCKETS];
static volatile int stop;

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *drain(void *unused) {
    static char bufs[32][2048];
    struct mmsghdr msgs[32];
    struct iovec iov[32];
    (void)unused;
    pin(1);
    for (int i = 0; i < 32; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (!stop)
        for (int i = 0; i < SOCKETS; i++)
            while (recvmmsg(rx[i], msgs, 32, MSG_DONTWAIT, NULL) > 0) {
            }
    return NULL;
}

static double thread_cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    int batch = argc > 1 ? atoi(argv[1]) : 1;
    int big = 8 << 20;
    if (batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "usage: %s BATCH (1-%d)\n", argv[0], MAX_BATCH);
        return 2;
    }
    pin(0);
    for (int i = 0; i < SOCKETS; i++) {
        socklen_t len = sizeof rx_addr[i];
        rx[i] = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(rx[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        rx_addr[i].sin_family = AF_INET;
        rx_addr[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(rx[i], (struct sockaddr *)&rx_addr[i], sizeof rx_addr[i]);
        getsockname(rx[i], (struct sockaddr *)&rx_addr[i], &len);
    }
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    pthread_t drainer;
    pthread_create(&drainer, NULL, drain, NULL);

    char payload[120];
    memset(payload, 1, sizeof payload);
    struct iovec iov = {.iov_base = payload, .iov_len = sizeof payload};
    struct mmsghdr msgs[MAX_BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < MAX_BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }

    double start = thread_cpu_s();
    long sent = 0, next = 0;
    while (sent < DATAGRAMS) {
        int n;
        if (batch == 1) {
            msgs[0].msg_hdr.msg_name = &rx_addr[next % SOCKETS];
            n = sendmsg(tx, &msgs[0].msg_hdr, 0) > 0 ? 1 : 0;
        } else {
            for (int i = 0; i < batch; i++)
                msgs[i].msg_hdr.msg_name = &rx_addr[(next + i) % SOCKETS];
            n = sendmmsg(tx, msgs, batch, 0);
        }
        if (n <= 0) {
            perror("send");
            break;
        }
        next += n;
        sent += n;
        if (sent % 64 < n)
            usleep(50); /* let the drainer keep up: no datagram is dropped for buffer space */
    }
    double cpu = thread_cpu_s() - start;
    stop = 1;
    pthread_join(drainer, NULL);
    printf("batch %d: %.2f us of CPU per datagram\n", batch, cpu * 1e6 / sent);
    return 0;
}
