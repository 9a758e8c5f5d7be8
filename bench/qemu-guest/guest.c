/* SPDX-License-Identifier: MIT */
/*
 * ftbench's QEMU test guest: a freestanding 32-bit multiboot kernel that
 * dirties its RAM at a paced rate, like ftrepl's synthetic workload, and can
 * check its own pages after a migration. `ftbench --postcopy` boots it in
 * QEMU for the qemu-* variants (bench/qemu_peer.c drives it).
 *
 * Command line (QEMU's -append): "rate=R seed=S adv=A"
 *   R  page writes per second (0 = as fast as the vCPU goes);
 *   S  the seed of the page sequence;
 *   A  writes per page done flat out before READY (3: ~95 % of the pages
 *      hold data, as ftbench's synthetic workload after its advance).
 *
 * Memory: every page from the end of this image (_end, page aligned) up to
 * the top of the RAM the multiboot memory map says is available above 1 MiB
 * is a workload page (N of them), except a table of N 32-bit words at the
 * top that only the check uses. Everything is zeroed before the first write.
 *
 * Write k (k = 0, 1, ...): page p = hi32(mix(k * GOLDEN + S) * N), filled
 * whole: w[0] = "FTBG", w[1] = p, w[2] = k, w[3] = S, w[4..1023] =
 * mix(k ^ C ^ 2S), a rep stos. The page of any write is a function of k,
 * so the check replays 0 .. k-1 to know every page's last writer; the
 * counter itself lives in the guest's RAM (this image's .bss), on a page
 * written by every write, like the synthetic workload's control page.
 *
 * Pacing: by the TSC (calibrated against PIT channel 2 at boot); every
 * elapsed microsecond adds R / 1e6 writes of budget, and the guest halts
 * when it has none left (the PIT's 1 kHz interrupt wakes it). At most
 * 0.1 s of budget is kept, so a guest that fell behind (a slow vCPU, the
 * check) does not burst. The guest's TSC stops while QEMU stops the VM.
 *
 * COM1 (0x3f8), one line each:
 *   FTBG BOOT PAGES=N BASE=0x... RATE=R SEED=S ADV=A
 *   FTBG READY K=k T=ms TSC_MHZ=f             after the advance
 *   FTBG T=ms K=k                             every second (T: ms since boot)
 *   FTBG VERIFY OK K=k PAGES=N WRITTEN=n SUM=0x... MS=ms
 *   FTBG VERIFY BAD K=k BAD=b FIRST=p WANT=j GOT=w2 SUM=0x... MS=ms
 *   FTBG EXCEPTION v                          a CPU exception; the guest stops
 * Input on COM1: 'V' checks every page now (the workload pauses meanwhile
 * and then goes on), 'P' prints a progress line now.
 *
 * The check: a written page must hold exactly its last writer's content, an
 * unwritten one must be all zero (WANT=0xffffffff). SUM is the sum over
 * pages whose w[0] is "FTBG" of mix(w[2] ^ p * GOLDEN), which ftbench
 * recomputes from k alone: a stale page changes it even if this check
 * were wrong.
 */
#include <stdarg.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define PAGE 4096u
#define WORDS (PAGE / 4)
#define HDR_WORDS 4
#define MAGIC 0x47425446u	/* "FTBG" little-endian */
#define GOLDEN 0x9E3779B9u
#define VALUE_C 0x85EBCA6Bu
#define COM1 0x3f8
#define PIT_DIVISOR 1193	/* 1193182 Hz / 1193: 1000.15 Hz */
#define MS_PER_PRINT 1000
#define CALIBRATE_MS 50
#define MAX_STEP_US 100000	/* keep at most 0.1 s of budget */
#define MB_BOOT_MAGIC 0x2BADB002u

void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
void guest_main(u32 magic, const u32 *mbi);
void guest_exception(u32 vec);

extern char _end[];
extern void isr_timer(void);
extern void isr_ignore(void);
extern const u32 isr_exc_table[32];

/* Incremented by isr_timer (entry.S). */
volatile u32 guest_ticks;

static struct {
	u32 rate, seed, adv;
	u32 npages;
	u8 *base;		/* page 0 of the workload */
	u32 *last;		/* the check's table: last writer + 1 per page */
	u32 k;			/* writes completed */
	u32 tsc_per_us;		/* calibrated against the PIT at boot */
	u64 tsc_last;		/* the TSC the clock below was advanced to */
	u32 ms, us_frac;	/* the clock: ms since boot, and the us beyond */
	u32 last_print;		/* ms of the last progress line */
} g;

/* ---- the compiler may call these ------------------------------------------ */

void *memset(void *d, int c, unsigned long n)
{
	u8 *p = d;

	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	u8 *p = d;
	const u8 *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

/* ---- ports, COM1 ------------------------------------------------------------ */

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void com_init(void)
{
	outb(COM1 + 1, 0x00);	/* no UART interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xC7);	/* FIFOs on and cleared */
	outb(COM1 + 4, 0x03);	/* DTR, RTS */
}

static void com_putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

/* A received byte, or -1. */
static int com_getc(void)
{
	return inb(COM1 + 5) & 0x01 ? inb(COM1) : -1;
}

static void put_u32(u32 v, unsigned base)
{
	char buf[12];
	int n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		com_putc(buf[--n]);
}

/* %u, %x (as 0x...), %s only. */
static void print(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			com_putc(*f);
			continue;
		}
		switch (*++f) {
		case 'u':
			put_u32(va_arg(ap, u32), 10);
			break;
		case 'x':
			com_putc('0');
			com_putc('x');
			put_u32(va_arg(ap, u32), 16);
			break;
		case 's':
			for (const char *s = va_arg(ap, const char *); *s; s++)
				com_putc(*s);
			break;
		default:
			com_putc('?');
			break;
		}
	}
	va_end(ap);
}

/* ---- interrupts: IDT, PIC, PIT ---------------------------------------------------- */

struct gate {
	u16 off_lo, sel;
	u8 zero, attr;
	u16 off_hi;
} __attribute__((packed));

static struct gate idt[256];

static void set_gate(unsigned v, void (*fn)(void))
{
	u32 a = (u32)fn;

	idt[v] = (struct gate){ .off_lo = (u16)a, .sel = 0x08, .attr = 0x8E,
				.off_hi = (u16)(a >> 16) };
}

static void irq_init(void)
{
	struct {
		u16 limit;
		u32 base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (u32)idt };

	for (unsigned v = 0; v < 256; v++)
		set_gate(v, v < 32 ? (void (*)(void))isr_exc_table[v] : isr_ignore);
	set_gate(0x20, isr_timer);
	__asm__ volatile("lidt %0" : : "m"(idtr));
	/* 8259 pair: vectors 0x20 / 0x28, cascade on IRQ 2, 8086 mode */
	outb(0x20, 0x11);
	outb(0xA0, 0x11);
	outb(0x21, 0x20);
	outb(0xA1, 0x28);
	outb(0x21, 0x04);
	outb(0xA1, 0x02);
	outb(0x21, 0x01);
	outb(0xA1, 0x01);
	outb(0x21, 0xFE);	/* IRQ 0 only */
	outb(0xA1, 0xFF);
	/* PIT channel 0, rate generator */
	outb(0x43, 0x34);
	outb(0x40, PIT_DIVISOR & 0xFF);
	outb(0x40, PIT_DIVISOR >> 8);
	__asm__ volatile("sti");
}

void guest_exception(u32 vec)
{
	print("FTBG EXCEPTION %u\n", vec);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- time: the TSC, calibrated with PIT channel 2 ---------------------------------- */

static inline u64 rdtsc(void)
{
	u32 lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return lo | (u64)hi << 32;
}

/*
 * TSC ticks per microsecond: PIT channel 2 counts CALIBRATE_MS down in
 * mode 0 (its output, port 0x61 bit 5, rises at the end) while the TSC
 * runs. Under TCG the guest's TSC is the host's, stopped while the VM is
 * stopped; the PIT follows QEMU's virtual clock. The 1 kHz interrupt is
 * only used to wake the guest from hlt: QEMU drops ticks while the vCPU
 * is busy, so counting them would run slow.
 */
static u32 tsc_calibrate(void)
{
	u32 latch = 1193182u * CALIBRATE_MS / 1000u;
	u64 t0, t1;

	outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));	/* gate on, speaker off */
	outb(0x43, 0xB0);				/* channel 2, lo/hi, mode 0 */
	outb(0x42, (u8)latch);
	outb(0x42, (u8)(latch >> 8));
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20))
		if (rdtsc() - t0 > 0xF0000000ull)	/* no PIT output: ~1 GHz, say */
			return 1000;
	t1 = rdtsc();
	return (u32)(t1 - t0) / (CALIBRATE_MS * 1000u) ?: 1;
}

/* n / d for a quotient that fits 32 bits (n >> 32 < d): no libgcc. */
static u32 div_u64_u32(u64 n, u32 d)
{
	u32 q, r;

	__asm__("divl %4" : "=a"(q), "=d"(r) : "a"((u32)n), "d"((u32)(n >> 32)), "rm"(d));
	return q;
}

/* Advances the clock to now; returns the microseconds it moved (at most
 * MAX_STEP_US: a longer gap, e.g. the check, counts as that). */
static u32 clock_update(void)
{
	u64 d = rdtsc() - g.tsc_last;
	u32 us;

	if (d > (u64)MAX_STEP_US * g.tsc_per_us) {
		g.tsc_last += d;
		us = MAX_STEP_US;
	} else {
		us = (u32)d / g.tsc_per_us;
		g.tsc_last += (u64)us * g.tsc_per_us;	/* keep the remainder */
	}
	g.us_frac += us;
	g.ms += g.us_frac / 1000;
	g.us_frac %= 1000;
	return us;
}

/* ---- the workload ------------------------------------------------------------------ */

/* lowbias32 (Chris Wellons' hash prospector): a bijection of u32. */
static u32 mix(u32 x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static u32 page_of(u32 k)
{
	return (u32)(((u64)mix(k * GOLDEN + g.seed) * g.npages) >> 32);
}

static u32 value_of(u32 k)
{
	return mix(k ^ VALUE_C ^ (g.seed << 1));
}

static void fill(u32 *d, u32 v, u32 n)
{
	__asm__ volatile("cld; rep stosl" : "+D"(d), "+c"(n) : "a"(v) : "memory", "cc");
}

/* True when n > 0 words at p all equal v. */
static int all_equal(const u32 *p, u32 n, u32 v)
{
	u8 ne;

	__asm__ volatile("cld; repe scasl; setne %0"
			 : "=q"(ne), "+D"(p), "+c"(n)
			 : "a"(v)
			 : "memory", "cc");
	return !ne;
}

static void write_one(void)
{
	u32 k = g.k, p = page_of(k);
	u32 *w = (u32 *)(g.base + p * PAGE);

	w[0] = MAGIC;
	w[1] = p;
	w[2] = k;
	w[3] = g.seed;
	fill(w + HDR_WORDS, value_of(k), WORDS - HDR_WORDS);
	g.k = k + 1;
}

static void verify(void)
{
	u64 t0 = rdtsc();
	u32 ms, bad = 0, first = 0, want = 0, got = 0, written = 0, sum = 0;

	fill(g.last, 0, g.npages);
	for (u32 j = 0; j < g.k; j++)
		g.last[page_of(j)] = j + 1;
	for (u32 p = 0; p < g.npages; p++) {
		const u32 *w = (const u32 *)(g.base + p * PAGE);
		u32 l = g.last[p];
		int ok;

		if (w[0] == MAGIC)
			sum += mix(w[2] ^ p * GOLDEN);
		if (l) {
			written++;
			ok = w[0] == MAGIC && w[1] == p && w[2] == l - 1 && w[3] == g.seed &&
			     all_equal(w + HDR_WORDS, WORDS - HDR_WORDS, value_of(l - 1));
		} else {
			ok = all_equal(w, WORDS, 0);
		}
		if (!ok && !bad++) {
			first = p;
			want = l ? l - 1 : 0xffffffffu;
			got = w[2];
		}
	}
	ms = div_u64_u32(rdtsc() - t0, g.tsc_per_us * 1000);
	if (!bad)
		print("FTBG VERIFY OK K=%u PAGES=%u WRITTEN=%u SUM=%x MS=%u\n", g.k, g.npages,
		      written, sum, ms);
	else
		print("FTBG VERIFY BAD K=%u BAD=%u FIRST=%u WANT=%x GOT=%x SUM=%x MS=%u\n", g.k,
		      bad, first, want, got, sum, ms);
}

/* Progress lines and COM1 input; between writes only. */
static void service(void)
{
	int c = com_getc();

	if (c == 'V')
		verify();
	if (c == 'P' || g.ms - g.last_print >= MS_PER_PRINT) {
		g.last_print = g.ms;
		print("FTBG T=%u K=%u\n", g.ms, g.k);
	}
}

/* ---- boot -------------------------------------------------------------------------- */

/* "key=DIGITS" as a word of the command line. 0 or -1. */
static int parse_key(const char *cmdline, const char *key, u32 *out)
{
	for (const char *s = cmdline; *s; s++) {
		const char *a = s, *b = key;
		u32 v = 0;

		if (s != cmdline && s[-1] != ' ')
			continue;
		while (*b && *a == *b)
			a++, b++;
		if (*b || *a < '0' || *a > '9')
			continue;
		while (*a >= '0' && *a <= '9')
			v = v * 10 + (u32)(*a++ - '0');
		*out = v;
		return 0;
	}
	return -1;
}

/* The top of the available RAM that holds 1 MiB (multiboot memory map,
 * else mem_upper), below 4 GiB. */
static u32 ram_top(const u32 *mbi)
{
	u32 flags = mbi[0];

	if (flags & (1u << 6)) {
		const u8 *p = (const u8 *)mbi[12], *end = p + mbi[11];

		while (p < end) {
			const u32 *e = (const u32 *)p;
			u64 base = e[1] | (u64)e[2] << 32, len = e[3] | (u64)e[4] << 32;

			if (e[5] == 1 && base <= 0x100000 && base + len > 0x100000)
				return base + len > 0xFFFFF000ull ? 0xFFFFF000u : (u32)(base + len);
			p += e[0] + 4;
		}
	}
	if (flags & 1u)
		return 0x100000u + mbi[2] * 1024u;
	return 0;
}

void guest_main(u32 magic, const u32 *mbi)
{
	const char *cmdline = "";
	u32 top, start;
	u64 cap, budget = 0;

	com_init();
	if (magic != MB_BOOT_MAGIC) {
		print("FTBG EXCEPTION 255 not booted by multiboot\n");
		return;
	}
	if (mbi[0] & (1u << 2))
		cmdline = (const char *)mbi[4];
	g.seed = 1;
	g.adv = 3;
	parse_key(cmdline, "rate=", &g.rate);
	parse_key(cmdline, "seed=", &g.seed);
	parse_key(cmdline, "adv=", &g.adv);
	top = ram_top(mbi);
	start = ((u32)_end + PAGE - 1) & ~(PAGE - 1);
	if (top <= start + 16 * PAGE) {
		print("FTBG EXCEPTION 254 no memory (top %x)\n", top);
		return;
	}
	/* N pages and N table words below top; mbi and the command line are
	 * read before this and may be overwritten now */
	g.npages = (top - start) / (PAGE + 4);
	g.base = (u8 *)start;
	g.last = (u32 *)(start + g.npages * PAGE);
	print("FTBG BOOT PAGES=%u BASE=%x RATE=%u SEED=%u ADV=%u\n", g.npages, start, g.rate,
	      g.seed, g.adv);
	g.tsc_per_us = tsc_calibrate();
	g.tsc_last = rdtsc();
	irq_init();
	fill((u32 *)g.base, 0, g.npages * WORDS + g.npages);
	for (u32 i = 0, n = g.adv * g.npages; i < n; i++)
		write_one();
	clock_update();
	g.last_print = g.ms;
	print("FTBG READY K=%u T=%u TSC_MHZ=%u\n", g.k, g.ms, g.tsc_per_us);
	cap = (u64)MAX_STEP_US * g.rate;
	if (cap < 1000000)
		cap = 1000000;
	for (;;) {
		/* budget: writes x 1e6, rate per elapsed microsecond */
		if (g.rate) {
			budget += (u64)clock_update() * g.rate;
			if (budget > cap)
				budget = cap;
			if (budget < 1000000) {
				service();
				/* woken by the next PIT tick (1 ms) at the latest */
				__asm__ volatile("hlt");
				continue;
			}
			budget -= 1000000;
		} else if (!(g.k & 63)) {
			clock_update();
		}
		write_one();
		if (!(g.k & 63))
			service();
	}
}
