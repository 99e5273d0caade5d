/* Runs any model compiled by Kestrel through dlopen and its descriptor (no header needed).
 *
 *   kestrel compile MODEL.onnx -o m.so
 *   cc -std=c11 -O2 examples/c/run_model.c -ldl -o run_model
 *   ./run_model ./m.so [--prefix NAME] IN0.bin [IN1.bin ...] -o OUT0.bin [OUT1.bin ...]
 *
 * Input files hold the raw little-endian bytes of each graph input (exactly
 * kestrel_tensor_desc.size_bytes); outputs are written the same way. Prints the inputs and outputs
 * the descriptor declares. The types come from docs/ABI.md (repeated here, as a program that loads
 * arbitrary models has no generated header). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kestrel_tensor_desc {
    const char *name;
    int32_t dtype;
    int32_t rank;
    const int64_t *shape;
    uint64_t size_bytes;
} kestrel_tensor_desc;
typedef struct kestrel_model_desc {
    uint32_t magic, abi_version;
    uint64_t workspace_size, workspace_align;
    uint32_t num_inputs, num_outputs;
    const kestrel_tensor_desc *inputs, *outputs;
    uint32_t num_tasks, num_status;
    const char *const *status_messages;
    const char *name, *target, *cpu_features;
} kestrel_model_desc;
typedef int32_t (*run_fn)(const void *const *inputs, void *const *outputs, void *workspace);

static void *read_file(const char *path, uint64_t want) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    void *buf = malloc(want ? want : 1);
    int ok = buf && fread(buf, 1, want, f) == want && fgetc(f) == EOF;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "%s: expected exactly %llu bytes\n", path, (unsigned long long)want);
        free(buf);
        return NULL;
    }
    return buf;
}

static void print_desc(const char *what, const kestrel_tensor_desc *t) {
    printf("%s %s: dtype %d, shape [", what, t->name, (int)t->dtype);
    for (int i = 0; i < t->rank; i++) printf(i ? ", %lld" : "%lld", (long long)t->shape[i]);
    printf("], %llu bytes\n", (unsigned long long)t->size_bytes);
}

int main(int argc, char **argv) {
    const char *prefix = "kestrel";
    const char *ins[64], *outs[64];
    int n_in = 0, n_out = 0, to_out = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.so [--prefix NAME] IN.bin... -o OUT.bin...\n", argv[0]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--prefix") && i + 1 < argc) prefix = argv[++i];
        else if (!strcmp(argv[i], "-o")) to_out = 1;
        else if (to_out && n_out < 64) outs[n_out++] = argv[i];
        else if (!to_out && n_in < 64) ins[n_in++] = argv[i];
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    char sym[256];
    snprintf(sym, sizeof sym, "%s_model", prefix);
    const kestrel_model_desc *m = dlsym(lib, sym);
    snprintf(sym, sizeof sym, "%s_run", prefix);
    run_fn run;
    *(void **)&run = dlsym(lib, sym);
    if (!m || !run || m->magic != 0x4C54534Bu || m->abi_version != 1) {
        fprintf(stderr, "%s: not a Kestrel model of ABI version 1 with prefix %s\n", argv[1], prefix);
        return 1;
    }
    printf("model %s for %s (%s), workspace %llu bytes\n", m->name, m->target, m->cpu_features,
           (unsigned long long)m->workspace_size);
    for (uint32_t i = 0; i < m->num_inputs; i++) print_desc("input", &m->inputs[i]);
    for (uint32_t i = 0; i < m->num_outputs; i++) print_desc("output", &m->outputs[i]);
    if ((uint32_t)n_in != m->num_inputs || (uint32_t)n_out > m->num_outputs || m->num_inputs > 64 ||
        m->num_outputs > 64) {
        fprintf(stderr, "the model has %u inputs and %u outputs\n", m->num_inputs, m->num_outputs);
        return 1;
    }
    const void *in_ptrs[64];
    void *out_ptrs[64];
    for (uint32_t i = 0; i < m->num_inputs; i++)
        if (!(in_ptrs[i] = read_file(ins[i], m->inputs[i].size_bytes))) return 1;
    for (uint32_t i = 0; i < m->num_outputs; i++)
        if (!(out_ptrs[i] = calloc(1, m->outputs[i].size_bytes ? m->outputs[i].size_bytes : 1))) return 1;
    size_t align = m->workspace_align, size = (m->workspace_size + align - 1) / align * align;
    void *ws = aligned_alloc(align, size ? size : align);
    int32_t st = ws ? run(in_ptrs, out_ptrs, ws) : -2;
    if (st != 0) {
        fprintf(stderr, "run failed with status %d%s%s\n", (int)st, st > 0 ? ": " : "",
                st > 0 && (uint32_t)st <= m->num_status ? m->status_messages[st - 1] : "");
        return 1;
    }
    for (int i = 0; i < n_out; i++) {
        FILE *f = fopen(outs[i], "wb");
        if (!f || fwrite(out_ptrs[i], 1, m->outputs[i].size_bytes, f) != m->outputs[i].size_bytes ||
            fclose(f) != 0) {
            perror(outs[i]);
            return 1;
        }
    }
    printf("ok\n");
    return 0;
}
