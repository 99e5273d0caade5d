/* Runs the digits classifier compiled ahead of time by Kestrel, from C.
 *
 *   kestrel compile examples/digits.onnx -o digits.so --symbol-prefix digits
 *   cc -std=c11 -O2 -I. examples/c/run_digits.c ./digits.so -Wl,-rpath,'$ORIGIN' -pthread -o run_digits
 *   ./run_digits examples/digit.npy [THREADS [OUT.bin]]
 *
 * Prints the 10 logits (exact: %.9g round-trips a float) and the predicted class. With THREADS > 1
 * the model's tasks (kestrel compile --tasks N) run on POSIX threads through digits_run_parallel.
 * OUT.bin receives the raw output bytes. The header digits.h is written by kestrel compile beside
 * digits.so; every name used below comes from it (see docs/ABI.md). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digits.h"

/* Reads a little-endian float32 .npy file holding exactly n elements. */
static int read_npy_f32(const char *path, float *out, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    unsigned char pre[12];
    size_t header_len;
    int ok = fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0;
    if (ok && pre[6] == 1) {
        header_len = pre[8] | (size_t)pre[9] << 8;
    } else if (ok && fread(pre + 10, 1, 2, f) == 2) {
        header_len = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    } else {
        ok = 0;
    }
    char header[4096];
    ok = ok && header_len < sizeof header && fread(header, 1, header_len, f) == header_len;
    if (ok) {
        header[header_len] = 0;
        ok = strstr(header, "'<f4'") != NULL && strstr(header, "'fortran_order': False") != NULL;
    }
    ok = ok && fread(out, sizeof(float), n, f) == n && fgetc(f) == EOF;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "%s: expected a float32 .npy of %zu elements\n", path, n);
        return -1;
    }
    return 0;
}

/* The host's parallel-for: thread t of T runs tasks t, t + T, t + 2T, ... */
struct pool {
    int threads;
};
struct job {
    kestrel_task task;
    const void *ctx;
    uint64_t first, step, count;
};
static void *run_job(void *arg) {
    struct job *j = arg;
    for (uint64_t i = j->first; i < j->count; i += j->step) j->task(j->ctx, i);
    return NULL;
}
static void parallel_for(void *pool, kestrel_task task, const void *ctx, uint64_t count) {
    enum { MAX_THREADS = 64 };
    int n = ((struct pool *)pool)->threads;
    if (n > MAX_THREADS) n = MAX_THREADS;
    if ((uint64_t)n > count) n = (int)count;
    pthread_t tid[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    int started = 1;
    for (int t = 0; t < n; t++) jobs[t] = (struct job){task, ctx, (uint64_t)t, (uint64_t)n, count};
    for (int t = 1; t < n; t++) {
        if (pthread_create(&tid[t], NULL, run_job, &jobs[t]) != 0) break;
        started++;
    }
    /* Tasks of threads that could not start run here. */
    for (int t = started; t < n; t++) run_job(&jobs[t]);
    if (n > 0) run_job(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIGIT.npy [THREADS [OUT.bin]]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (digits_model.abi_version != KESTREL_ABI_VERSION) {
        fprintf(stderr, "ABI version %u, expected %d\n", digits_model.abi_version, KESTREL_ABI_VERSION);
        return 1;
    }
    if (digits_check_cpu() != KESTREL_OK) {
        fprintf(stderr, "this CPU lacks features the model needs: %s\n", digits_model.cpu_features);
        return 1;
    }
    static float input[DIGITS_INPUT0_ELEMENTS];
    static float output[DIGITS_OUTPUT0_ELEMENTS];
    if (read_npy_f32(argv[1], input, DIGITS_INPUT0_ELEMENTS) != 0) return 1;
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t ws_size = (DIGITS_WORKSPACE_SIZE + DIGITS_WORKSPACE_ALIGN - 1) / DIGITS_WORKSPACE_ALIGN * DIGITS_WORKSPACE_ALIGN;
    void *workspace = aligned_alloc(DIGITS_WORKSPACE_ALIGN, ws_size ? ws_size : DIGITS_WORKSPACE_ALIGN);
    if (!workspace) {
        perror("workspace");
        return 1;
    }
    const void *inputs[] = {input};
    void *outputs[] = {output};
    struct pool pool = {threads};
    int32_t status = threads > 1 ? digits_run_parallel(inputs, outputs, workspace, parallel_for, &pool)
                                 : digits_run(inputs, outputs, workspace);
    free(workspace);
    if (status != KESTREL_OK) {
        const char *why = status == KESTREL_ERR_CPU         ? "CPU lacks a feature"
                          : status == KESTREL_ERR_WORKSPACE ? "bad workspace"
                          : status > 0 && (uint32_t)status <= digits_model.num_status
                              ? digits_model.status_messages[status - 1]
                              : "unknown status";
        fprintf(stderr, "run failed with status %d: %s\n", (int)status, why);
        return 1;
    }
    int best = 0;
    printf("%s:", DIGITS_OUTPUT0_NAME);
    for (int i = 0; i < (int)DIGITS_OUTPUT0_ELEMENTS; i++) {
        printf(" %.9g", output[i]);
        if (output[i] > output[best]) best = i;
    }
    printf("\nclass: %d\n", best);
    if (argc > 3) {
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(output, 1, sizeof output, f) != sizeof output || fclose(f) != 0) {
            perror(argv[3]);
            return 1;
        }
    }
    return 0;
}
