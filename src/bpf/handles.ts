/**
 * Typed handles for the BPF objects lowport holds: a map, a program, a link,
 * each owning its fd, in the manner of cilium/ebpf's `*ebpf.Map`,
 * `*ebpf.Program` and `link.Link` over its `internal/sys.FD`. syscall.ts stays
 * the raw layer (bpf(2) commands over fd numbers); code above bpf/ holds
 * handles, never numbers, so that an fd cannot outlive its object's use, be
 * closed twice, or be mistaken for another kind of object.
 *
 * Ownership: close() closes the fd once; closing again does nothing; any use
 * after close throws SyscallError EBADF naming the object (cilium/ebpf's
 * ErrClosedFd is EBADF too), never reaching the kernel with a number that may
 * by then be another file's. `withHandles` scopes them: every handle a step
 * takes is closed when the step ends, however it ends (systemd's _cleanup_,
 * Go's defer). Not `using` declarations: Symbol.dispose came with Node 20.4
 * (lowport supports 20.0 on), and try/finally says the same thing.
 *
 * Pins go through an open, checked directory (bpffs.ts, os/dirfd.ts): bpf()
 * takes only a path, so the path is /proc/self/fd/N/NAME of that directory's
 * fd, never a name looked up again from the root.
 */
import type { LinkInfo, MapCreate, MapInfo } from './attr.js';
import {
  closeFd,
  fdById,
  linkCreate,
  linkInfo,
  linkUpdate,
  mapCreate,
  mapDelete,
  mapInfo,
  mapLookup,
  mapLookupAll,
  mapUpdate,
  mapUpdateBatch,
  objGet,
  objPin,
  progInfo,
  progLengths,
  progLoad,
  type ProgLoadOptions,
} from './syscall.js';
import type { DirFd } from '../os/dirfd.js';
import { EBADF } from '../os/errno.js';
import { SyscallError } from '../os/libc.js';

/** Anything that owns a resource and lets it go with close(). */
export interface Closable {
  close(): void;
}

/**
 * An fd this handle owns: the number while open, closed once. Also the handle of a cgroup
 * directory's fd (for BPF_LINK_CREATE, BPF_PROG_QUERY).
 */
export class OwnedFd implements Closable {
  #fd: number;

  /** `what` names the object in errors: `map lowport_policy`, `cgroup /sys/fs/cgroup`. */
  constructor(
    fd: number,
    readonly what: string,
  ) {
    this.#fd = fd;
  }

  /** The fd, for a bpf_attr; throws once the handle is closed. */
  get fd(): number {
    if (this.#fd < 0)
      throw new SyscallError(`${this.what}: used after close()`, EBADF, {
        hint: 'This is a bug in lowport: please report it with the command that failed.',
      });
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the fd (the object lives on while a pin or another fd holds it); again: nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeFd(fd);
  }
}

/** A map, program or link: an owned fd that can be pinned. */
abstract class BpfObject extends OwnedFd {
  /** Pins the object as `name` in `dir` (BPF_OBJ_PIN through the directory's fd). */
  pin(dir: DirFd, name: string): void {
    objPin(this.fd, dir.procPath(name));
  }
}

/** Runs `fn` with `handle`, closing it afterwards whatever happens. */
export function withHandle<H extends Closable, T>(handle: H, fn: (handle: H) => T): T {
  try {
    return fn(handle);
  } finally {
    handle.close();
  }
}

/**
 * Runs `fn` with `own`, which hands back what it is given and closes it when
 * `fn` ends, in the reverse order of taking, whatever happens: every fd a
 * multi-step operation opens is let go without a list kept by hand.
 */
export function withHandles<T>(fn: (own: <H extends Closable>(handle: H) => H) => T): T {
  const owned: Closable[] = [];
  try {
    return fn((handle) => {
      owned.push(handle);
      return handle;
    });
  } finally {
    for (const h of owned.reverse()) h.close();
  }
}

type MapLayout = Pick<MapInfo, 'keySize' | 'valueSize' | 'maxEntries'>;

/** A BPF map (BPF_MAP_CREATE, a pin, or an id). */
export class MapHandle extends BpfObject {
  /** Its sizes: known when it was created here, else read from the kernel on first need. */
  #layout: MapLayout | undefined;

  private constructor(fd: number, what: string, layout?: MapLayout) {
    super(fd, what);
    this.#layout = layout;
  }

  static create(spec: MapCreate): MapHandle {
    const fd = mapCreate(spec);
    return new MapHandle(fd, `map ${spec.name ?? fd}`, { keySize: spec.keySize, valueSize: spec.valueSize, maxEntries: spec.maxEntries });
  }

  /** The map pinned as `name` in `dir`; undefined when nothing is pinned there. */
  static openPinned(dir: DirFd, name: string): MapHandle | undefined {
    const fd = objGet(dir.procPath(name));
    return fd === undefined ? undefined : new MapHandle(fd, `map ${dir.path}/${name}`);
  }

  /** The map with this id; undefined when it went away meanwhile. */
  static fromId(id: number): MapHandle | undefined {
    const fd = fdById('map', id);
    return fd === undefined ? undefined : new MapHandle(fd, `map id ${id}`);
  }

  /** Its id, type, sizes and name (BPF_OBJ_GET_INFO_BY_FD). */
  info(): MapInfo {
    return mapInfo(this.fd);
  }

  #sizes(): MapLayout {
    this.#layout ??= this.info();
    return this.#layout;
  }

  /** The value under `key`, or undefined when there is none. */
  lookup(key: Buffer): Buffer | undefined {
    return mapLookup(this.fd, key, this.#sizes().valueSize);
  }

  update(key: Buffer, value: Buffer, flags = 0): void {
    mapUpdate(this.fd, key, value, flags);
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: Buffer): boolean {
    return mapDelete(this.fd, key);
  }

  /** Writes `count` entries, keys and values packed back to back, in as few calls as the kernel takes. */
  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    mapUpdateBatch(this.fd, keys, values, count);
  }

  /** Every (key, value), packed back to back, in a few calls. */
  lookupAll(): { keys: Buffer; values: Buffer; count: number } {
    const { keySize, valueSize, maxEntries } = this.#sizes();
    return mapLookupAll(this.fd, keySize, valueSize, maxEntries);
  }
}

/** A loaded BPF program. */
export class ProgramHandle extends BpfObject {
  private constructor(fd: number, what: string) {
    super(fd, what);
  }

  /** BPF_PROG_LOAD; a refusal carries the verifier's log (syscall.ts progLoad). */
  static load(p: ProgLoadOptions): ProgramHandle {
    return new ProgramHandle(progLoad(p), `program ${p.name}`);
  }

  /** The program with this id; undefined when it went away meanwhile. */
  static fromId(id: number): ProgramHandle | undefined {
    const fd = fdById('prog', id);
    return fd === undefined ? undefined : new ProgramHandle(fd, `program id ${id}`);
  }

  /** Its name, tag, creator and map ids. */
  info(): ReturnType<typeof progInfo> {
    return progInfo(this.fd);
  }

  /** Its length as the kernel runs it: BPF instructions after the verifier's rewrites, bytes of JIT code. */
  lengths(): ReturnType<typeof progLengths> {
    return progLengths(this.fd);
  }
}

/** A BPF link: a program attached to a hook for as long as the link lives (an fd or a pin holds it). */
export class LinkHandle extends BpfObject {
  private constructor(fd: number, what: string) {
    super(fd, what);
  }

  /** Attaches `program` to the open cgroup at `attachType` (BPF_LINK_CREATE). */
  static attachCgroup(program: ProgramHandle, cgroup: OwnedFd, attachType: number, what: string): LinkHandle {
    return new LinkHandle(linkCreate(program.fd, cgroup.fd, attachType), `link ${what}`);
  }

  /** The link pinned as `name` in `dir`; undefined when nothing is pinned there. */
  static openPinned(dir: DirFd, name: string): LinkHandle | undefined {
    const fd = objGet(dir.procPath(name));
    return fd === undefined ? undefined : new LinkHandle(fd, `link ${dir.path}/${name}`);
  }

  /** Its id, type and the id of the program it runs. */
  info(): LinkInfo {
    return linkInfo(this.fd);
  }

  /** Atomically makes the link run `program` (BPF_LINK_UPDATE); with `expected`, only if it still runs that one. */
  update(program: ProgramHandle, expected?: ProgramHandle): void {
    linkUpdate(this.fd, program.fd, expected?.fd);
  }
}
