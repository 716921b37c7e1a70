namespace KnowledgeDistillation.Objectives;

/// <summary>
/// A value that changes with the optimizer step: a term's weight, a temperature, JSD's β. Steps count from 0.
/// </summary>
public abstract record Schedule
{
    /// <summary>The value at <paramref name="step"/>.</summary>
    public abstract double ValueAt(long step);

    /// <summary>Always <paramref name="value"/>.</summary>
    public static Schedule Constant(double value) => new ConstantSchedule(RequireFinite(value, nameof(value)));

    /// <summary>From <paramref name="start"/> at step 0 to <paramref name="end"/> at step <paramref name="steps"/>, in a straight line; <paramref name="end"/> afterwards.</summary>
    public static Schedule Linear(double start, double end, long steps) =>
        new InterpolatedSchedule(RequireFinite(start, nameof(start)), RequireFinite(end, nameof(end)), RequireSteps(steps), IsCosine: false);

    /// <summary>From <paramref name="start"/> to <paramref name="end"/> over <paramref name="steps"/> along half a cosine (slow, fast, slow); <paramref name="end"/> afterwards.</summary>
    public static Schedule Cosine(double start, double end, long steps) =>
        new InterpolatedSchedule(RequireFinite(start, nameof(start)), RequireFinite(end, nameof(end)), RequireSteps(steps), IsCosine: true);

    /// <summary>
    /// A constant schedule. Not checked here: the method that receives it checks it and names its own parameter
    /// (<c>SoftTargets(double.NaN)</c> is refused as an invalid <c>weight</c>, not as an invalid "value").
    /// </summary>
    public static implicit operator Schedule(double value) => new ConstantSchedule(value);

    /// <summary>
    /// The smallest and largest values the schedule takes (every value lies between them): what the method that
    /// receives a schedule checks, when it is given. A schedule written outside the library overrides this to state its
    /// range; the default, the value at step 0, is all that can be known without it.
    /// </summary>
    public virtual IEnumerable<double> Extremes => [ValueAt(0)];

    /// <summary>Whether the value is the same at every step (false when that cannot be known, as for a schedule written elsewhere).</summary>
    internal virtual bool IsConstant => false;

    private static double RequireFinite(double value, string name) =>
        double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"A schedule's {name} must be a finite number; got {value}.");

    private static long RequireSteps(long steps) =>
        steps > 0 ? steps : throw new ArgumentOutOfRangeException(nameof(steps), steps, $"A schedule needs a positive number of steps; got {steps}.");

    private sealed record ConstantSchedule(double Value) : Schedule
    {
        public override IEnumerable<double> Extremes => [Value];

        internal override bool IsConstant => true;

        public override double ValueAt(long step) => Value;
    }

    private sealed record InterpolatedSchedule(double Start, double End, long Steps, bool IsCosine) : Schedule
    {
        public override IEnumerable<double> Extremes => [Start, End];

        internal override bool IsConstant => Start == End;

        public override double ValueAt(long step)
        {
            double progress = Math.Clamp(step / (double)Steps, 0, 1);
            double shape = IsCosine ? 1 - Curves.CosineDecay(progress) : progress;
            return Start + (End - Start) * shape;
        }
    }
}
